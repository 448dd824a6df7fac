package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/agent/table"
)

// hostIDRun starts the daemon against srv with dataDir and extra flags,
// waits for a result line sent by this run, stops it, and returns the
// host identifiers this run sent (at enrollment, if it enrolled, and on
// its result lines).
func hostIDRun(t *testing.T, srv *agenttest.Server, dataDir string, extra ...string) []string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	sec := filepath.Join(dir, "secret")
	os.WriteFile(sec, []byte(srv.EnrollSecret+"\n"), 0o600)
	enrolls, results := len(srv.Enrolls()), len(srv.Results())
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &out
	args := append([]string{
		"--tls_hostname=" + strings.TrimPrefix(srv.URL, "https://"),
		"--tls_server_certs=" + ca, "--enroll_secret_path=" + sec,
		"--database_path=" + dataDir, "--logger_tls_period=1", "--disable_events",
	}, extra...)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	ok := srv.WaitFor(20*time.Second, func() bool { return len(srv.Results()) > results })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	m.Close()
	if !ok {
		t.Fatalf("no result line reached the server\n%s", out.String())
	}
	var ids []string
	for _, e := range srv.Enrolls()[enrolls:] {
		ids = append(ids, e.HostIdentifier)
	}
	for _, r := range srv.Results()[results:] {
		ids = append(ids, r.HostIdentifier)
	}
	return ids
}

// sameID checks that every identifier a run sent is want.
func sameID(t *testing.T, what string, ids []string, want string) {
	t.Helper()
	if len(ids) == 0 {
		t.Fatalf("%s: no host identifier sent", what)
	}
	for _, id := range ids {
		if id != want {
			t.Errorf("%s: host identifier %q, want %q (all sent: %q)", what, id, want, ids)
			return
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// TestHostIdentifierLive runs the daemon on this machine with
// --host_identifier=uuid (twice on the same data directory: the identifier
// must survive the restart) and with --host_identifier=hostname.
func TestHostIdentifierLive(t *testing.T) {
	e, err := table.Open(context.Background(), table.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Query(context.Background(), "SELECT hostname, uuid FROM system_info")
	e.Close()
	if err != nil || len(res.Rows) != 1 {
		t.Fatalf("system_info: %v %v", res.Rows, err)
	}
	hostname, wantUUID := res.Rows[0]["hostname"], res.Rows[0]["uuid"]
	if wantUUID == "" {
		// No DMI UUID (containers, some VMs): the agent derives it from
		// /etc/machine-id.
		b, err := os.ReadFile("/etc/machine-id")
		if id := strings.TrimSpace(string(b)); err != nil || len(id) != 32 {
			t.Skipf("this machine has neither a DMI UUID nor a 32-digit /etc/machine-id (%v): the uuid identifier has no source to check against", err)
		} else {
			wantUUID = strings.ToUpper(id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:])
		}
	}
	srv := agenttest.NewServer("sekret")
	defer srv.Close()
	srv.SetConfig([]byte(`{"schedule":{"up":{"query":"SELECT total_seconds FROM uptime","interval":1}}}`))

	data := filepath.Join(t.TempDir(), "db")
	first := hostIDRun(t, srv, data, "--host_identifier=uuid")
	if !uuidRE.MatchString(first[0]) {
		t.Fatalf("uuid identifier %q is not a UUID", first[0])
	}
	sameID(t, "uuid, first run", first, wantUUID)
	if strings.EqualFold(first[0], hostname) {
		t.Fatalf("uuid identifier equals the hostname %q", hostname)
	}
	second := hostIDRun(t, srv, data, "--host_identifier=uuid")
	sameID(t, "uuid, after a restart", second, first[0])
	if n := len(srv.Enrolls()); n != 1 {
		t.Errorf("%d enrollments for one data directory, want 1 (node key kept across the restart)", n)
	}

	byName := hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"), "--host_identifier=hostname")
	sameID(t, "hostname", byName, hostname)
	dflt := hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"))
	sameID(t, "default (hostname)", dflt, hostname)
}

// TestHostIdentifierFixture points --root at a fake host whose DMI UUID,
// machine-id and hostname are known, so both modes have exact answers.
func TestHostIdentifierFixture(t *testing.T) {
	write := func(root, p, s string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := agenttest.NewServer("sekret")
	defer srv.Close()
	srv.SetConfig([]byte(`{"schedule":{"t":{"query":"SELECT unix_time FROM time","interval":1}}}`))

	// A DMI UUID wins over machine-id.
	dmi := t.TempDir()
	write(dmi, "proc/sys/kernel/hostname", "fixture-host\n")
	write(dmi, "sys/class/dmi/id/product_uuid", "4C4C4544-0042-3510-8052-B7C04F4B4E31\n")
	write(dmi, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	data := filepath.Join(t.TempDir(), "db")
	sameID(t, "uuid from DMI", hostIDRun(t, srv, data, "--root="+dmi, "--host_identifier=uuid"), "4C4C4544-0042-3510-8052-B7C04F4B4E31")
	sameID(t, "uuid from DMI, restarted", hostIDRun(t, srv, data, "--root="+dmi, "--host_identifier=uuid"), "4C4C4544-0042-3510-8052-B7C04F4B4E31")
	sameID(t, "hostname", hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"), "--root="+dmi, "--host_identifier=hostname"), "fixture-host")

	// Without DMI: the UUID spelled from /etc/machine-id.
	mid := t.TempDir()
	write(mid, "proc/sys/kernel/hostname", "other-host\n")
	write(mid, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	sameID(t, "uuid from machine-id", hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"), "--root="+mid, "--host_identifier=uuid"), "01234567-89AB-CDEF-0123-456789ABCDEF")

	// Neither DMI nor machine-id: as osquery, a UUID generated once and
	// kept in the data directory, never the hostname.
	bare := t.TempDir()
	write(bare, "proc/sys/kernel/hostname", "bare-host\n")
	data = filepath.Join(t.TempDir(), "db")
	gen := hostIDRun(t, srv, data, "--root="+bare, "--host_identifier=uuid")
	if !uuidRE.MatchString(gen[0]) || gen[0] == "bare-host" {
		t.Fatalf("no DMI, no machine-id: identifier %q is not a UUID", gen[0])
	}
	sameID(t, "generated uuid", gen, gen[0])
	sameID(t, "generated uuid, restarted", hostIDRun(t, srv, data, "--root="+bare, "--host_identifier=uuid"), gen[0])
	// Another data directory is another agent: another UUID.
	other := hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"), "--root="+bare, "--host_identifier=uuid")
	if !uuidRE.MatchString(other[0]) || strings.EqualFold(other[0], gen[0]) {
		t.Errorf("a fresh data directory reused the generated uuid %q (got %q)", gen[0], other[0])
	}
	sameID(t, "hostname on the bare fixture", hostIDRun(t, srv, filepath.Join(t.TempDir(), "db"), "--root="+bare, "--host_identifier=hostname"), "bare-host")
}
