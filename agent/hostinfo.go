package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent/table"
	"github.com/vigilhq/vigil/osquery"
)

// hostDetailTables are the tables whose first row osquery sends in
// host_details at enrollment.
var hostDetailTables = []string{"os_version", "osquery_info", "system_info", "platform_info"}

// hostDetails reads host_details for enrollment. A table this platform does
// not have is left out.
func (a *Agent) hostDetails(ctx context.Context) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, t := range hostDetailTables {
		if !a.hasTable(t) {
			continue
		}
		// Table names come from the list above, never from input.
		res, err := a.engine.Query(ctx, "SELECT * FROM "+t)
		if err != nil || len(res.Rows) == 0 {
			continue
		}
		out[t] = res.Rows[0]
	}
	if a.opts.LongPoll {
		out["vigil"] = map[string]string{
			"capability": strconv.Itoa(osquery.CapabilityVersion),
			"long_poll":  "true",
			"version":    vigil.Version,
		}
	}
	return out
}

func (a *Agent) hasTable(name string) bool {
	for _, s := range a.engine.Tables() {
		if s.Name == name {
			return true
		}
	}
	return false
}

// hostIdentifier is what the agent reports as hostIdentifier: the hostname
// (system_info.hostname, as osquery) or the host UUID.
func (a *Agent) hostIdentifier() string {
	if a.opts.HostIdentifier == "uuid" && a.hostUUID != "" {
		return a.hostUUID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := a.engine.Query(ctx, "SELECT hostname FROM system_info"); err == nil && len(res.Rows) == 1 && res.Rows[0]["hostname"] != "" {
		return res.Rows[0]["hostname"]
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// hostUUID is the platform (DMTF) UUID as system_info reports it, else one
// derived from /etc/machine-id, else, as osquery does, a random UUID
// generated once and kept in dataDir (host_uuid), so that the identifier
// survives restarts.
func hostUUID(e *table.Engine, root, dataDir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := e.Query(ctx, "SELECT uuid FROM system_info"); err == nil && len(res.Rows) == 1 && res.Rows[0]["uuid"] != "" {
		return res.Rows[0]["uuid"], nil
	}
	if root == "" {
		root = "/"
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc", "machine-id")); err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 32 {
			return strings.ToUpper(id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32]), nil
		}
	}
	id, err := loadOrCreateID(filepath.Join(dataDir, "host_uuid"))
	if err != nil {
		return "", fmt.Errorf("host uuid: %w", err)
	}
	// Spelled as the other two sources.
	return strings.ToUpper(id), nil
}

func buildPlatform() string {
	switch runtime.GOOS {
	case "linux":
		return "linux"
	case "darwin":
		return "darwin"
	case "windows":
		return "windows"
	}
	return runtime.GOOS
}

// loadOrCreateID returns the UUID stored in path, creating it on first use.
func loadOrCreateID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id := newUUID()
	if err := writeFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeFileAtomic writes data to path through a synced temporary file and a
// rename, so that a crash leaves the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return replaceFile(path, data, perm, true)
}

// replaceFile writes data to a temporary file next to path and renames it
// over path, so that readers see the old or the new content, never a mix.
// With sync the data is fsynced before the rename (crash-safe); without,
// a crash may leave an empty or old file, for data that is cheap to lose.
// The temporary file is removed on failure.
func replaceFile(path string, data []byte, perm os.FileMode, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
