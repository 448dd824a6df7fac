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
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(log + ".3"); err == nil {
			time.Sleep(2500 * time.Millisecond) // two more rotations: the oldest go
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	must(t, <-done)
	files, _ := filepath.Glob(log + "*")
	if len(files) < 4 {
		t.Fatalf("snapshot log files %v: three rotations did not happen within 30 s", files)
	}
	if len(files) > keep+1 {
		t.Errorf("%d files, want at most %d rotated plus the current one", len(files), keep)
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
