package table

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSelfProcess finds the test binary itself with every column read
// from /proc, and checks what the process knows about itself.
func TestSelfProcess(t *testing.T) {
	e := openTest(t, Options{})
	pid := os.Getpid()
	res := query(t, e, "SELECT * FROM processes WHERE pid = "+strconv.Itoa(pid))
	if len(res.Rows) != 1 {
		t.Fatalf("rows = %d, want 1", len(res.Rows))
	}
	r := res.Rows[0]
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	wd, _ := os.Getwd()
	want := map[string]string{
		"pid": strconv.Itoa(pid), "parent": strconv.Itoa(os.Getppid()), "path": exe, "cwd": wd,
		"uid": strconv.Itoa(os.Getuid()), "euid": strconv.Itoa(os.Geteuid()), "gid": strconv.Itoa(os.Getgid()),
		"on_disk": "1", "wired_size": "0", "root": "/",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %q, want %q", k, r[k], v)
		}
	}
	if !strings.HasPrefix(r["cmdline"], os.Args[0]) {
		t.Errorf("cmdline %q does not start with %q", r["cmdline"], os.Args[0])
	}
	if n, _ := strconv.Atoi(r["threads"]); n < 1 {
		t.Errorf("threads = %q", r["threads"])
	}
	if rss, _ := strconv.ParseInt(r["resident_size"], 10, 64); rss <= 0 {
		t.Errorf("resident_size = %q", r["resident_size"])
	}
}
