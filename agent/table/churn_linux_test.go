package table

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestMain doubles as the short-lived child of the churn tests: with
// TABLE_TEST_CHURN_CHILD=1 the test binary opens a file and a socket (so
// that it has rows in every per-process table) and exits at once.
func TestMain(m *testing.M) {
	if os.Getenv("TABLE_TEST_CHURN_CHILD") == "1" {
		f, _ := os.Open("/etc/hostname")
		c, _ := net.ListenPacket("udp", "127.0.0.1:0")
		if f != nil {
			f.Close()
		}
		if c != nil {
			c.Close()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// perProcessTables are the tables that read /proc/<pid>/... of every
// process, each with the column that holds the pid.
var perProcessTables = []string{"process_open_files", "process_open_sockets", "process_envs", "process_memory_map"}

// churnChild starts the test binary as a short-lived child.
func churnChild() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TABLE_TEST_CHURN_CHILD=1")
	return cmd
}

// TestPerProcessTablesUnderChurn scans the per-process tables while
// short-lived processes (with files, sockets, environment and mappings)
// come and go: a process that exits mid-scan is skipped, never an error,
// and the rows of this test process, which stays alive, are always there.
func TestPerProcessTablesUnderChurn(t *testing.T) {
	// A socket of ours, so that process_open_sockets has a row for us.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("cannot listen on loopback: %v", err)
	}
	defer ln.Close()
	self := strconv.Itoa(os.Getpid())
	e := openTest(t, Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var spawned atomic.Int64
	var childMu sync.Mutex
	children := map[string]bool{}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					cmd := churnChild()
					if cmd.Start() != nil {
						continue
					}
					childMu.Lock()
					children[strconv.Itoa(cmd.Process.Pid)] = true
					childMu.Unlock()
					if cmd.Wait() == nil {
						spawned.Add(1)
					}
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	seenChildren := map[string]bool{}
	for i := 0; i < 15; i++ {
		for _, tb := range perProcessTables {
			res, err := e.Query(context.Background(), "SELECT * FROM "+tb)
			if err != nil {
				t.Fatalf("scan %d of %s: %v", i, tb, err)
			}
			mine := 0
			for _, r := range res.Rows {
				if r["pid"] == "" {
					t.Fatalf("scan %d of %s: row without pid: %v", i, tb, r)
				}
				if r["pid"] == self {
					mine++
				}
				childMu.Lock()
				if children[r["pid"]] {
					seenChildren[r["pid"]] = true
				}
				childMu.Unlock()
			}
			if mine == 0 {
				t.Fatalf("scan %d of %s: %d rows, none of this live process %s", i, tb, len(res.Rows), self)
			}
		}
	}
	if spawned.Load() == 0 {
		t.Fatal("no child process ran during the scans: nothing churned")
	}
	// Scans that met children alive show the race was really run.
	t.Logf("%d child processes came and went during the scans; rows of %d of them were read mid-life", spawned.Load(), len(seenChildren))
}

// TestPerProcessTablesExitedPid asks the per-process tables (and
// processes) about a pid that has just exited, the deterministic case of a
// process that is gone between listing and reading: no rows, no error.
func TestPerProcessTablesExitedPid(t *testing.T) {
	cmd := churnChild()
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Skipf("pid %s was reused already", pid)
	}
	e := openTest(t, Options{})
	for _, tb := range append([]string{"processes"}, perProcessTables...) {
		wantRows(t, e, "SELECT * FROM "+tb+" WHERE pid = "+pid)
	}
}
