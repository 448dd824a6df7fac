package table

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Live tests read this machine's /proc.

func TestLiveChildProcess(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary on this machine")
	}
	cmd := exec.Command(sleep, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	e := openTest(t, Options{})
	pid := strconv.Itoa(cmd.Process.Pid)
	res := query(t, e, "SELECT pid, name, path, cmdline, parent, uid, on_disk, state FROM processes WHERE pid = "+pid)
	if len(res.Rows) != 1 {
		t.Fatalf("found %d rows for the child %s", len(res.Rows), pid)
	}
	r := res.Rows[0]
	real, _ := filepath.EvalSymlinks(sleep)
	want := map[string]string{
		"pid": pid, "name": "sleep", "path": real, "cmdline": sleep + " 30",
		"parent": strconv.Itoa(os.Getpid()), "uid": strconv.Itoa(os.Getuid()), "on_disk": "1",
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %q, want %q", k, r[k], v)
		}
	}
	// The same process is found by a full scan.
	res = query(t, e, "SELECT count(*) AS n FROM processes WHERE parent = "+strconv.Itoa(os.Getpid())+" AND name = 'sleep'")
	if res.Rows[0]["n"] != "1" {
		t.Errorf("full scan found %s sleeping children", res.Rows[0]["n"])
	}
	// A pid that does not exist is no error, just no row.
	res = query(t, e, "SELECT * FROM processes WHERE pid = 999999999")
	if len(res.Rows) != 0 {
		t.Errorf("nonexistent pid gave %d rows", len(res.Rows))
	}
}

func TestLiveListeningPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("cannot listen on loopback: %v", err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	e := openTest(t, Options{})
	res := query(t, e, "SELECT pid, address, protocol, family FROM listening_ports WHERE port = "+port)
	if len(res.Rows) != 1 {
		t.Fatalf("listening_ports has %d rows for port %s", len(res.Rows), port)
	}
	want := map[string]string{"pid": strconv.Itoa(os.Getpid()), "address": "127.0.0.1", "protocol": "6", "family": "2"}
	for k, v := range want {
		if res.Rows[0][k] != v {
			t.Errorf("%s = %q, want %q", k, res.Rows[0][k], v)
		}
	}
}

// TestConcurrentQueries runs queries from several goroutines (the race
// detector checks the engine's shared state).
func TestConcurrentQueries(t *testing.T) {
	e := openTest(t, Options{MaxConns: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				q := "SELECT count(*) AS n FROM processes"
				if i%2 == 1 {
					q = "SELECT * FROM users u JOIN groups g ON u.gid = g.gid"
				}
				if _, err := e.Query(context.Background(), q); err != nil {
					errs <- err
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLiveNetworkTables checks the netlink tables against the loopback
// interface every Linux host has.
func TestLiveNetworkTables(t *testing.T) {
	e := openTest(t, Options{})
	res := query(t, e, "SELECT mac, type, mtu, flags FROM interface_details WHERE interface = 'lo'")
	if len(res.Rows) != 1 {
		t.Fatalf("interface_details has %d rows for lo", len(res.Rows))
	}
	lo := res.Rows[0]
	if lo["mac"] != "00:00:00:00:00:00" || lo["type"] != "772" || lo["mtu"] == "0" || lo["flags"] == "" {
		t.Errorf("lo details: %v", lo)
	}
	if flags, _ := strconv.Atoi(lo["flags"]); flags&0x1 == 0 || flags&0x8 == 0 {
		t.Errorf("lo flags %s lack IFF_UP|IFF_LOOPBACK", lo["flags"])
	}
	wantRows(t, e, "SELECT interface, mask, type FROM interface_addresses WHERE address = '127.0.0.1'",
		row("interface", "lo", "mask", "255.0.0.0", "type", "unknown"))
	res = query(t, e, "SELECT interface, type, netmask, source FROM routes WHERE destination = '127.0.0.0'")
	if len(res.Rows) != 1 || res.Rows[0]["interface"] != "lo" || res.Rows[0]["type"] != "local" || res.Rows[0]["netmask"] != "8" {
		t.Errorf("127.0.0.0/8 route: %v", res.Rows)
	}
}

// TestProcessesUnderChurn scans while short-lived processes come and go:
// a process that exits mid-scan is skipped, never an error.
func TestProcessesUnderChurn(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary on this machine")
	}
	e := openTest(t, Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					exec.Command(truePath).Run()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 30; i++ {
		res, err := e.Query(context.Background(), "SELECT pid, name, cmdline, path FROM processes")
		if err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
		for _, r := range res.Rows {
			if r["pid"] == "" {
				t.Fatalf("scan %d: row without pid: %v", i, r)
			}
		}
	}
}

// TestLongCmdline reads a command line longer than a page, which procfs
// hands out in several reads.
func TestLongCmdline(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary on this machine")
	}
	args := []string{"30"}
	for i := 0; i < 3000; i++ {
		args = append(args, "0") // sleep sums its arguments
	}
	cmd := exec.Command(sleep, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	e := openTest(t, Options{})
	res := query(t, e, "SELECT cmdline FROM processes WHERE pid = "+strconv.Itoa(cmd.Process.Pid))
	want := sleep + " " + strings.Join(args, " ")
	if len(res.Rows) != 1 || res.Rows[0]["cmdline"] != want {
		got := ""
		if len(res.Rows) == 1 {
			got = res.Rows[0]["cmdline"]
		}
		t.Errorf("cmdline of %d bytes, want %d", len(got), len(want))
	}
}
