package event

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The exactly-once tests run the work in a child process (the test binary
// re-executed with an environment variable): the kernel does not audit the
// process registered as the audit receiver, and a child gives one known pid.

const sockOnceN = 100

// sockChildReport is what the socket child prints: the fixed port, and per
// connection i the listener address (127.0.1.(i+1)) and fd, the client's fd
// and the client's own address as the server's accept saw it. The kernel
// may give two clients the same local port (their destinations differ), so
// accepts are told apart by the listener's fd.
type sockChildReport struct {
	Port     int      `json:"port"`
	Listen   []string `json:"listen"`
	ListenFD []int    `json:"listen_fd"`
	Clients  []string `json:"clients"` // "ip:port"
	ClientFD []int    `json:"client_fd"`
}

func sockFD(c syscall.Conn) int {
	fd := -1
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(f uintptr) { fd = int(f) })
	}
	return fd
}

// sockChild binds N listeners on distinct loopback addresses with one fixed
// port, connects once to each and accepts each connection, keeping all
// sockets open until the end so that nothing is reused.
func sockChild(n int) error {
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	rep := sockChildReport{Port: port}
	var lns []*net.TCPListener
	for i := 0; i < n; i++ {
		ip := net.IPv4(127, 0, 1, byte(i+1))
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: ip, Port: port})
		if err != nil {
			return fmt.Errorf("bind %s:%d: %w", ip, port, err)
		}
		lns = append(lns, ln)
		rep.Listen = append(rep.Listen, ip.String())
		rep.ListenFD = append(rep.ListenFD, sockFD(ln))
	}
	var keep []net.Conn
	for _, ln := range lns {
		c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			return fmt.Errorf("connect %s: %w", ln.Addr(), err)
		}
		keep = append(keep, c)
		rep.Clients = append(rep.Clients, c.LocalAddr().String())
		rep.ClientFD = append(rep.ClientFD, sockFD(c))
	}
	for _, ln := range lns {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		keep = append(keep, c)
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	for _, c := range keep {
		c.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	return nil
}

func TestMain(m *testing.M) {
	switch {
	case os.Getenv("VIGIL_SOCK_ONCE_CHILD") != "":
		n, _ := strconv.Atoi(os.Getenv("VIGIL_SOCK_ONCE_CHILD"))
		if err := sockChild(n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case os.Getenv("VIGIL_EXECVEAT_CHILD") != "":
		err := execveatChild(os.Getenv("VIGIL_EXECVEAT_CHILD"))
		fmt.Fprintln(os.Stderr, "execveat:", err)
		os.Exit(1)
	case os.Getenv("VIGIL_BURST_CHILD") != "":
		if err := burstChild(os.Getenv("VIGIL_BURST_CHILD")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSocketEventsExactlyOnce: a child binds N sockets, makes N connects and
// accepts N connections; each appears exactly once in socket_events with
// the child's pid and the right addresses and ports.
func TestSocketEventsExactlyOnce(t *testing.T) {
	buf, m := startAuditOnly(t, "socket_events")
	defer m.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VIGIL_SOCK_ONCE_CHILD="+strconv.Itoa(sockOnceN))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("socket child: %v: %s", err, stderr.String())
	}
	var rep sockChildReport
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Clients) != sockOnceN {
		t.Fatalf("child report %q: %v", out, err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	port := strconv.Itoa(rep.Port)
	exe, _ := filepath.EvalSymlinks(os.Args[0])
	exe, _ = filepath.Abs(exe)

	want := map[string]int{} // "action fd addr:port" -> times seen
	for i := range sockOnceN {
		lfd, cfd := strconv.Itoa(rep.ListenFD[i]), strconv.Itoa(rep.ClientFD[i])
		want["bind "+lfd+" "+rep.Listen[i]+":"+port] = 0
		want["connect "+cfd+" "+rep.Listen[i]+":"+port] = 0
		want["accept "+lfd+" "+rep.Clients[i]] = 0
	}
	key := func(r map[string]string) string {
		if r["action"] == "bind" {
			return "bind " + r["fd"] + " " + r["local_address"] + ":" + r["local_port"]
		}
		return r["action"] + " " + r["fd"] + " " + r["remote_address"] + ":" + r["remote_port"]
	}
	count := func() (seen int, rows []map[string]string) {
		rows, _ = buf.Rows("socket_events", 0)
		for k := range want {
			want[k] = 0
		}
		for _, r := range rows {
			if r["pid"] != pid {
				continue
			}
			if _, ok := want[key(r)]; ok {
				want[key(r)]++
			}
		}
		for _, v := range want {
			if v > 0 {
				seen++
			}
		}
		return seen, rows
	}
	// Every event of the child precedes the sentinel child's: once one
	// of those is in, duplicates and stragglers would be too.
	socketSentinel(t, buf)
	_, rows := count()
	st := m.Stats()
	t.Logf("%d socket_events rows, stats %+v", len(rows), st)
	missing, dup := 0, 0
	for k, v := range want {
		switch {
		case v == 0:
			missing++
			if missing <= 5 {
				t.Errorf("%s: not reported", k)
			}
		case v > 1:
			dup++
			t.Errorf("%s: reported %d times, want once", k, v)
			for _, r := range rows {
				if r["pid"] == pid && key(r) == k {
					t.Logf("  %v", r)
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d socket operations missing", missing, len(want))
	}
	byAction := map[string]int{}
	for _, r := range rows {
		if r["pid"] != pid {
			continue
		}
		if _, ok := want[key(r)]; !ok {
			continue
		}
		byAction[r["action"]]++
		if r["family"] != "2" || r["path"] != exe || r["fd"] == "" || r["auid"] == "" || r["time"] == "" {
			t.Errorf("row %v: family/path(%s)/fd/auid/time", r, exe)
		}
		switch r["action"] {
		case "bind", "accept":
			if r["status"] != "succeeded" || r["success"] != "1" {
				t.Errorf("%s status %q success %q", key(r), r["status"], r["success"])
			}
		case "connect":
			// Go connects non-blocking: EINPROGRESS, then completion.
			if r["status"] != "in_progress" && r["status"] != "succeeded" {
				t.Errorf("%s status %q", key(r), r["status"])
			}
		}
		if r["action"] == "bind" && r["remote_port"] != "0" || r["action"] != "bind" && r["local_port"] != "0" {
			t.Errorf("%s: ports on the wrong side: %v", key(r), r)
		}
	}
	for _, a := range []string{"bind", "connect", "accept"} {
		if byAction[a] != sockOnceN {
			t.Errorf("%s rows for the child: %d, want %d", a, byAction[a], sockOnceN)
		}
	}
}

// execveatChild replaces this process with /bin/true through execveat(2):
// "dirfd" resolves "true" relative to an fd of /bin; "fd" executes an
// O_PATH fd of /bin/true with AT_EMPTY_PATH (what fexecve does). It returns
// only on failure.
func execveatChild(spec string) error {
	mode, tag, _ := strings.Cut(spec, ":")
	argv := []string{"vigil-execveat-" + mode, tag, "arg with space"}
	var dirfd, flags int
	var path string
	var err error
	switch mode {
	case "dirfd":
		dirfd, err = unix.Open("/bin", unix.O_PATH|unix.O_DIRECTORY, 0)
		path = "true"
	case "fd":
		dirfd, err = unix.Open("/bin/true", unix.O_PATH, 0)
		flags = unix.AT_EMPTY_PATH
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	av, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	ev, err := syscall.SlicePtrFromStrings([]string{"PATH=/usr/bin:/bin"})
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&av[0])), uintptr(unsafe.Pointer(&ev[0])), uintptr(flags), 0)
	return errno
}

// TestAuditExecveat: a process that replaces itself with execveat(2)
// appears once in process_events with syscall execveat, its pid, the
// executed file's path and the argv it passed.
func TestAuditExecveat(t *testing.T) {
	buf, m := startAuditOnly(t, "process_events")
	defer m.Close()
	tag := "vigil-execveat-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	truePath, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]string{}
	for _, mode := range []string{"dirfd", "fd"} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "VIGIL_EXECVEAT_CHILD="+mode+":"+tag)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("execveat child %s: %v: %s", mode, err, out)
		}
		pids[mode] = strconv.Itoa(cmd.Process.Pid)
	}
	// The sentinel exec comes after both children: once it is in, any
	// duplicate of theirs would be too.
	execSentinel(t, buf)
	rows, _ := buf.Rows("process_events", 0)
	for mode, pid := range pids {
		cmdline := "vigil-execveat-" + mode + " " + tag + " arg with space"
		var got []map[string]string
		execveats := 0
		for _, r := range rows {
			if r["cmdline"] == cmdline {
				got = append(got, r)
			}
			if r["pid"] == pid && r["syscall"] == "execveat" {
				execveats++
			}
		}
		if len(got) != 1 || execveats != 1 {
			t.Errorf("%s: %d rows with cmdline %q and %d execveat rows for pid %s, want 1 and 1", mode, len(got), cmdline, execveats, pid)
			continue
		}
		r := got[0]
		if r["pid"] != pid || r["syscall"] != "execveat" || r["path"] != truePath || r["parent"] != strconv.Itoa(os.Getpid()) {
			t.Errorf("%s row: pid %s (want %s) syscall %s path %s (want %s) parent %s", mode, r["pid"], pid, r["syscall"], r["path"], truePath, r["parent"])
		}
		// cmdline_size counts the argument bytes, without separators.
		if want := len("vigil-execveat-"+mode) + len(tag) + len("arg with space"); r["cmdline_size"] != strconv.Itoa(want) {
			t.Errorf("%s cmdline_size %s, want %d", mode, r["cmdline_size"], want)
		}
	}
}
