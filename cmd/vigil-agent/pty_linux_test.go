package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets a test run this package's main() in a child process (the
// test binary re-executed with VIGIL_AGENT_TEST_MAIN=1), so that the shell
// can be driven through a real terminal without building the binary.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_AGENT_TEST_MAIN") == "1" {
		os.Args = append([]string{"vigil-agent"}, strings.Fields(os.Getenv("VIGIL_AGENT_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// openPTY returns the master side of a new pseudo-terminal (80x24) and its
// opened slave side.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (/dev/ptmx: %v)", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Fatalf("ptsname: %v", err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		master.Close()
		t.Fatalf("set window size: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("cannot open the terminal's slave side: %v", err)
	}
	return master, slave
}

// ptyShell is vigil-agent shell running on a terminal.
type ptyShell struct {
	t      *testing.T
	master *os.File
	cmd    *exec.Cmd

	mu  sync.Mutex
	out bytes.Buffer
}

func startPTYShell(t *testing.T, home string) *ptyShell {
	t.Helper()
	master, slave := openPTY(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_AGENT_TEST_MAIN=1", "VIGIL_AGENT_TEST_ARGS=shell", "HOME="+home, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	s := &ptyShell{t: t, master: master, cmd: cmd}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		master.Close()
	})
	return s
}

func (s *ptyShell) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// send types keys and waits until want shows in the output after what was
// there before.
func (s *ptyShell) send(keys, want string) {
	s.t.Helper()
	before := len(s.output())
	if _, err := s.master.Write([]byte(keys)); err != nil {
		s.t.Fatalf("typing %q: %v", keys, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.output()[before:], want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("after typing %q, no %q in the terminal output:\n%q", keys, want, s.output()[before:])
}

// wait waits for the shell to exit with status 0.
func (s *ptyShell) wait() {
	s.t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Fatalf("shell exited with %v:\n%q", err, s.output())
		}
	case <-time.After(15 * time.Second):
		s.t.Fatalf("shell did not exit:\n%q", s.output())
	}
}

// TestShellOnTerminal drives vigil-agent shell through a pseudo-terminal:
// the readline prompt, .tables, a statement, history written to
// ~/.vigil_agent_history, and history read back by the next session (the
// up arrow recalls the last statement).
func TestShellOnTerminal(t *testing.T) {
	home := t.TempDir()
	sh := startPTYShell(t, home)
	sh.send("", "vigil> ")
	if !strings.Contains(sh.output(), "Type .help for help") {
		t.Fatalf("no interactive banner (readline not used?):\n%q", sh.output())
	}
	sh.send(".tables upti\r", "=> uptime")
	sh.send(".mode line\r", "vigil> ")
	sh.send("SELECT 40 + 2\r", "...> ")
	sh.send("  AS answer;\r", "answer = 42")
	sh.send("SELECT 'again' AS w;\r", "w = again")
	sh.send(".quit\r", "")
	sh.wait()

	hist, err := os.ReadFile(filepath.Join(home, ".vigil_agent_history"))
	if err != nil {
		t.Fatalf("history file: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(hist)), "\n")
	for _, want := range []string{".tables upti", ".mode line", "AS answer;", "SELECT 'again' AS w;"} {
		found := false
		for _, l := range lines {
			found = found || strings.Contains(l, want)
		}
		if !found {
			t.Errorf("history lacks %q: %q", want, lines)
		}
	}

	// A new session loads the history: the up arrow recalls ".quit", then
	// the statement before it, which Enter runs again (in table mode now).
	sh = startPTYShell(t, home)
	sh.send("", "vigil> ")
	sh.send("\x1b[A", ".quit")
	sh.send("\x1b[A", "SELECT 'again' AS w;")
	sh.send("\r", "| again |")
	sh.send(".exit\r", "")
	sh.wait()
}
