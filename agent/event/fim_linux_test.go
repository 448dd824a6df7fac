package event

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFilePathsSpec(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a/b/c"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "x1"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "x2"), 0o755))
	spec := parseFilePaths(map[string][]string{
		"rec":  {dir + "/a/%%"},
		"one":  {dir + "/x*/%"},
		"file": {dir + "/passwd"},
	}, map[string][]string{"rec": {dir + "/a/b/c"}})
	for path, want := range map[string]string{
		dir + "/a/f":         "rec",
		dir + "/a/b/f":       "rec",
		dir + "/a/b/c/f":     "", // excluded
		dir + "/x1/f":        "one",
		dir + "/x2/f":        "one",
		dir + "/x1/sub/f":    "", // one level only
		dir + "/passwd":      "file",
		dir + "/passwd2":     "",
		dir + "/other/x1/ff": "",
	} {
		if got := spec.match(path); got != want {
			t.Errorf("match(%s) = %q, want %q", strings.TrimPrefix(path, dir), got, want)
		}
	}
	dirs := strings.Join(spec.dirs(), ",")
	for _, d := range []string{dir, dir + "/a", dir + "/a/b/c", dir + "/x1", dir + "/x2"} {
		if !strings.Contains(dirs+",", d+",") {
			t.Errorf("dirs lacks %s: %s", d, dirs)
		}
	}
}

func sh(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh %q: %v %s", script, err, out)
	}
	return cmd.Process.Pid
}

func testFileEvents(t *testing.T, be fsBackend, wantPid bool) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "skip"), 0o755)
	os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644)
	spec := parseFilePaths(map[string][]string{"tmp": {dir + "/%%"}}, map[string][]string{"tmp": {dir + "/skip"}})
	buf := NewBuffer(BufferOptions{})
	s := startFilesOn(context.Background(), testLogger(t), buf, spec, be)
	defer s.Close()

	pid := sh(t, "printf hello > "+dir+"/new")
	sh(t, "chmod 600 "+dir+"/old")
	sh(t, "mv "+dir+"/old "+dir+"/renamed")
	sh(t, "mkdir "+dir+"/sub")
	time.Sleep(200 * time.Millisecond) // the new directory gets watched
	sh(t, "printf x > "+dir+"/sub/inner")
	sh(t, "printf x > "+dir+"/skip/ignored")
	sh(t, "rm "+dir+"/renamed")

	want := map[string]string{ // action:path suffix -> found
		"CREATED:/new": "", "UPDATED:/new": "", "ATTRIBUTES_MODIFIED:/old": "", "MOVED_FROM:/old": "",
		"MOVED_TO:/renamed": "", "CREATED:/sub/inner": "", "DELETED:/renamed": "",
	}
	var rows []map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, _ = buf.Rows("file_events", 0)
		n := 0
		for _, r := range rows {
			k := r["action"] + ":" + strings.TrimPrefix(r["target_path"], dir)
			if _, ok := want[k]; ok {
				want[k] = "seen"
			}
		}
		for _, v := range want {
			if v == "seen" {
				n++
			}
		}
		if n == len(want) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, v := range want {
		if v != "seen" {
			t.Errorf("%s: no %s row", be.name(), k)
		}
	}
	sum := sha256.Sum256([]byte("hello"))
	for _, r := range rows {
		if strings.Contains(r["target_path"], "/skip/") {
			t.Errorf("excluded path reported: %v", r)
		}
		if r["category"] != "tmp" || r["eid"] == "" || r["time"] == "" {
			t.Errorf("row %v", r)
		}
		if r["action"] == "UPDATED" && strings.HasSuffix(r["target_path"], "/new") {
			if r["sha256"] != hex.EncodeToString(sum[:]) || r["hashed"] != "1" || r["size"] != "5" {
				t.Errorf("updated row hashes %v", r)
			}
			if wantPid && r["pid"] != strconv.Itoa(pid) {
				t.Errorf("fanotify row pid %q, want the writer %d", r["pid"], pid)
			}
		}
	}
	t.Logf("%s: %d rows, stats %+v", be.name(), len(rows), s.Stats())
}

func TestFileEventsInotify(t *testing.T) {
	be, err := newInotify()
	if err != nil {
		t.Skipf("skipping: inotify unavailable: %v", err)
	}
	testFileEvents(t, be, false)
}

func TestFileEventsFanotify(t *testing.T) {
	requireRoot(t)
	be, err := newFanotify()
	if err != nil {
		t.Skipf("skipping: fanotify with FAN_REPORT_DFID_NAME unavailable (kernel >= 5.9 needed): %v", err)
	}
	testFileEvents(t, be, true)
}
