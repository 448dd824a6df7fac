package event

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fimOnceN = 100

// fimPhase runs script in one shell (so that fanotify sees a pid other than
// ours), then waits until every file f0..fN-1 has a row for action, and a
// little longer so that duplicates (a late UPDATED from the modify window)
// show up too. It returns the shell's pid.
func fimPhase(t *testing.T, buf *Buffer, dir, script, action string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		seen := map[string]bool{}
		rows, _ := buf.Rows("file_events", 0)
		for _, r := range rows {
			if r["action"] == action {
				seen[r["target_path"]] = true
			}
		}
		if len(seen) >= fimOnceN {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // > the 1 s modify window
	return cmd.Process.Pid
}

// testFileEventsOnce writes N new files, appends to each, then removes them
// all, and checks that every file has exactly one CREATED, then exactly one
// more UPDATED per write session (osquery reports a write session closed
// with close(2) as one UPDATED), then exactly one DELETED.
func testFileEventsOnce(t *testing.T, be fsBackend, wantPid bool) {
	dir := t.TempDir()
	spec := parseFilePaths(map[string][]string{"once": {dir + "/%"}}, nil)
	buf := NewBuffer(BufferOptions{})
	s := startFilesOn(context.Background(), testLogger(t), buf, spec, be)
	defer s.Close()

	loop := func(body string) string {
		return fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done", fimOnceN, body)
	}
	type phase struct {
		script string
		action string
		want   map[string]int // action -> rows per file after the phase
		pid    int
	}
	phases := []*phase{
		{script: loop(`printf "v1-$i" > f$i`), action: ActionCreated, want: map[string]int{ActionCreated: 1, ActionUpdated: 1}},
		{script: loop(`printf "v2" >> f$i`), action: ActionUpdated, want: map[string]int{ActionCreated: 1, ActionUpdated: 2}},
		{script: "exec rm -f " + strings.Join(fileNames(), " "), action: ActionDeleted, want: map[string]int{ActionCreated: 1, ActionUpdated: 2, ActionDeleted: 1}},
	}
	for pi, ph := range phases {
		ph.pid = fimPhase(t, buf, dir, ph.script, ph.action)
		rows, _ := buf.Rows("file_events", 0)
		got := map[string]map[string]int{} // file -> action -> count
		pids := map[string]map[string]bool{}
		for _, r := range rows {
			name := strings.TrimPrefix(r["target_path"], dir+"/")
			if got[name] == nil {
				got[name] = map[string]int{}
				pids[name] = map[string]bool{}
			}
			got[name][r["action"]]++
			pids[name][r["action"]+"/"+r["pid"]] = true
			if r["category"] != "once" {
				t.Errorf("row %v: category", r)
			}
		}
		bad := 0
		for _, name := range fileNames() {
			for action, n := range ph.want {
				if got[name][action] != n {
					bad++
					if bad <= 10 {
						t.Errorf("%s phase %d: %s has %d %s rows, want %d", be.name(), pi+1, name, got[name][action], action, n)
					}
				}
			}
			// A row of this phase's action carries the acting shell's pid
			// (fanotify); inotify cannot know it.
			if wantPid && !pids[name][ph.action+"/"+strconv.Itoa(ph.pid)] {
				bad++
				if bad <= 10 {
					t.Errorf("%s phase %d: %s %s row without the writer's pid %d: %v", be.name(), pi+1, name, ph.action, ph.pid, pids[name])
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s phase %d: %d wrong counts over %d files; stats %+v", be.name(), pi+1, bad, fimOnceN, s.Stats())
		}
		if len(got) != fimOnceN {
			t.Errorf("%s phase %d: rows for %d paths, want %d", be.name(), pi+1, len(got), fimOnceN)
		}
	}
	st := s.Stats()
	if want := uint64(fimOnceN * 4); st.Events != want || st.SocketOverflows != 0 {
		t.Errorf("%s stats %+v: want %d events and no overflow", be.name(), st, want)
	}
}

func fileNames() []string {
	out := make([]string, fimOnceN)
	for i := range out {
		out[i] = "f" + strconv.Itoa(i)
	}
	return out
}

func TestFileEventsOnceInotify(t *testing.T) {
	be, err := newInotify()
	if err != nil {
		t.Skipf("skipping: inotify unavailable: %v", err)
	}
	testFileEventsOnce(t, be, false)
}

func TestFileEventsOnceFanotify(t *testing.T) {
	requireRoot(t)
	be, err := newFanotify()
	if err != nil {
		t.Skipf("skipping: fanotify with FAN_REPORT_DFID_NAME unavailable (kernel >= 5.9 needed): %v", err)
	}
	testFileEventsOnce(t, be, true)
}
