package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "osqueryd.results.log")
	write := func(s string) { must(t, os.WriteFile(path, []byte(s), 0o600)) }
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	// No file yet, and a file under the size: nothing moves.
	must(t, rotateLog(path, 10, 3))
	write("short")
	must(t, rotateLog(path, 10, 3))
	if got := read(path); got != "short" {
		t.Fatalf("file under the size was rotated: %q", got)
	}
	// Five rotations with three kept: .1 newest, .3 oldest kept, none beyond.
	for i := 1; i <= 5; i++ {
		write(fmt.Sprintf("generation %d", i))
		must(t, rotateLog(path, 10, 3))
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("rotation %d left %s in place (err %v)", i, path, err)
		}
	}
	for i, want := range []string{"generation 5", "generation 4", "generation 3"} {
		if got := read(fmt.Sprintf("%s.%d", path, i+1)); got != want {
			t.Errorf("%s.%d = %q, want %q", filepath.Base(path), i+1, got, want)
		}
	}
	if m, _ := filepath.Glob(path + ".*"); len(m) != 3 {
		t.Errorf("rotated files %v, want 3", m)
	}
}

// The filesystem logger with rotation on: no file passes the size by more
// than one batch, rotated files are capped, and no line is lost or split.
func TestFilesystemLoggerRotates(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "osquery.conf")
	must(t, os.WriteFile(cfg, []byte(`{"schedule": {"snap": {"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) SELECT x FROM c", "interval": 1, "snapshot": true}}}`), 0o600))
	const size, keep = 500, 3
	opts := Options{DataDir: dir, ConfigPath: cfg, Root: fixtureRoot(t, "alice"), LoggerTLSPeriod: 100 * time.Millisecond,
		LoggerRotate: true, LoggerRotateSize: size, LoggerRotateMaxFiles: keep, Logger: testLogger(t)}
	a, err := New(opts)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	log := filepath.Join(dir, "log", "osqueryd.snapshots.log")
	// Wait for the oldest kept file (.3) to exist, then for its content to
	// change twice: two more rotations, each of which had to delete the
	// oldest file. Each snapshot line carries its run's unixTime, so the
	// content of each generation differs.
	read := func() string { b, _ := os.ReadFile(log + ".3"); return string(b) }
	var seen []string
	for deadline := time.Now().Add(60 * time.Second); len(seen) < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("%s.3 changed only %d times within 60 s (contents %q)", filepath.Base(log), max(len(seen)-1, 0), seen)
		}
		if c := read(); c != "" && (len(seen) == 0 || c != seen[len(seen)-1]) {
			seen = append(seen, c)
		}
	}
	cancel()
	must(t, <-done)
	files, _ := filepath.Glob(log + "*")
	if len(files) != keep+1 {
		t.Errorf("snapshot log files %v: want exactly %d rotated plus the current one", files, keep)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		// A run is one snapshot line of ~600 bytes: a batch, one or two.
		if len(b) > 3*size {
			t.Errorf("%s has %d bytes, over the %d-byte size by more than a batch", filepath.Base(f), len(b), size)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends mid-line", filepath.Base(f))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !strings.Contains(l, `"name":"snap"`) {
				t.Errorf("%s: unexpected line %q", filepath.Base(f), l)
			}
		}
	}
}

// TestFilesystemLoggerRotationFails: a rotation that cannot happen (a
// non-empty directory holds the rotated name, which stops root too) does
// not stop the filesystem logger: lines keep going to the current file and
// leave the spool, and the failure is warned about once, not every period.
func TestFilesystemLoggerRotationFails(t *testing.T) {
	var logs logBuffer
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	a := configuredAgent(t, dir, map[string]any{
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 3600}},
	}, func(o *Options) {
		o.LoggerPath, o.LoggerRotate, o.LoggerRotateSize, o.LoggerRotateMaxFiles = logDir, true, 10, 1
		o.Logger = logs.logger()
	})
	snaps := filepath.Join(logDir, "osqueryd.snapshots.log")
	must(t, os.MkdirAll(filepath.Join(snaps+".1", "in-the-way"), 0o700))
	var want strings.Builder
	for period := 0; period < 3; period++ {
		for i := 0; i < 4; i++ {
			line := fmt.Sprintf(`{"name":"q","action":"snapshot","period":%d,"i":%d}`, period, i)
			want.WriteString(line + "\n")
			_, err := a.results.Append([]byte(line))
			must(t, err)
		}
		if err := a.writeFiles(); err != nil {
			t.Fatalf("period %d: filesystem logger stopped: %v", period, err)
		}
		if n := a.results.Len(); n != 0 {
			t.Fatalf("period %d: %d result lines left in the spool", period, n)
		}
	}
	b, err := os.ReadFile(snaps)
	must(t, err)
	if string(b) != want.String() {
		t.Errorf("%s =\n%s\nwant every line, in order:\n%s", filepath.Base(snaps), b, want.String())
	}
	if n := strings.Count(logs.String(), "rotation failed"); n != 1 {
		t.Errorf("%d rotation warnings, want 1:\n%s", n, logs.String())
	}

	// Once the name is free, rotation works again.
	must(t, os.RemoveAll(snaps+".1"))
	_, err = a.results.Append([]byte(`{"name":"q","action":"snapshot","after":1}`))
	must(t, err)
	must(t, a.writeFiles())
	if r, err := os.ReadFile(snaps + ".1"); err != nil || string(r) != want.String() {
		t.Errorf("after freeing the name: %s.1 = %q (%v), want the old file", filepath.Base(snaps), r, err)
	}
	if c, _ := os.ReadFile(snaps); string(c) != `{"name":"q","action":"snapshot","after":1}`+"\n" {
		t.Errorf("after the rotation: current file %q", c)
	}
}
