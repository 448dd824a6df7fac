package event

import (
	"context"
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

	libaudit "github.com/elastic/go-libaudit/v2"
)

func startAuditOnly(t *testing.T, tables ...string) (*Buffer, *Manager) {
	t.Helper()
	requireRoot(t)
	buf := NewBuffer(BufferOptions{})
	m := Start(context.Background(), Options{Sink: buf, Logger: testLogger(t), Tables: tables})
	st := m.Stats()
	if len(st) == 0 || st[0].Source != "audit" || !st[0].Active {
		m.Close()
		for _, s := range st {
			if strings.Contains(s.Error, "already delivered") {
				t.Skipf("skipping: another process holds the audit socket: %s", s.Error)
			}
		}
		t.Fatalf("audit did not start: %+v", st)
	}
	return buf, m
}

func waitTable(b *Buffer, table string, match func(map[string]string) bool) map[string]string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, _ := b.Rows(table, 0)
		for _, r := range rows {
			if match(r) {
				return r
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// TestAuditSocketEvents binds and connects from a child process: the
// kernel does not audit the process registered as the audit daemon.
func TestAuditSocketEvents(t *testing.T) {
	if os.Getenv("VIGIL_SOCKET_CHILD") != "" {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			os.Exit(1)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		os.Exit(0)
	}
	buf, m := startAuditOnly(t, "socket_events")
	defer m.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAuditSocketEvents$")
	cmd.Env = append(os.Environ(), "VIGIL_SOCKET_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	port := strings.TrimSpace(string(out))
	pid := strconv.Itoa(cmd.Process.Pid)
	bind := waitTable(buf, "socket_events", func(r map[string]string) bool {
		// The row has the address the process asked for: port 0 here.
		return r["action"] == "bind" && r["local_port"] == "0" && r["pid"] == pid && r["family"] == "2"
	})
	conn := waitTable(buf, "socket_events", func(r map[string]string) bool {
		return r["action"] == "connect" && r["remote_port"] == port && r["pid"] == pid
	})
	if bind == nil || conn == nil {
		t.Fatalf("child pid %s port %s: bind %v connect %v", pid, port, bind, conn)
	}
	if conn["remote_address"] != "127.0.0.1" || conn["family"] != "2" || conn["path"] == "" || conn["fd"] == "" {
		t.Fatalf("connect row %v", conn)
	}
	if conn["status"] != "succeeded" && conn["status"] != "in_progress" {
		t.Fatalf("connect status %q", conn["status"])
	}
	if bind["local_address"] != "127.0.0.1" || bind["status"] != "succeeded" || bind["success"] != "1" {
		t.Fatalf("bind row %v", bind)
	}
}

func TestAuditUserEvents(t *testing.T) {
	buf, m := startAuditOnly(t, "user_events")
	defer m.Close()
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tag := "vigiltest" + strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := `op=` + tag + ` acct="vigil" exe="/usr/bin/vigiltest" hostname=? addr=127.0.0.1 terminal=pts/9 res=success`
	_, err = c.Netlink.Send(syscall.NetlinkMessage{
		Header: syscall.NlMsghdr{Type: 1112, Flags: syscall.NLM_F_REQUEST}, // AUDIT_USER_LOGIN
		Data:   append([]byte(msg), 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := waitTable(buf, "user_events", func(r map[string]string) bool { return strings.Contains(r["message"], tag) })
	if r == nil {
		rows, _ := buf.Rows("user_events", 0)
		t.Fatalf("no user_events row for %s; rows %v", tag, rows)
	}
	if r["type"] != "1112" || r["path"] != "/usr/bin/vigiltest" || r["terminal"] != "pts/9" || r["address"] != "127.0.0.1" || r["uid"] != "0" || r["pid"] == "" {
		t.Fatalf("user_events row %v", r)
	}
}

// TestAuditRecoversAfterKill9 kills an agent holding the audit socket with
// SIGKILL (rules installed, pid registered) and checks the next start takes
// over and that its Close leaves the audit state as it was before.
func TestAuditRecoversAfterKill9(t *testing.T) {
	if os.Getenv("VIGIL_AUDIT_CHILD") != "" {
		m := Start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Tables: []string{"process_events", "socket_events"}, StateDir: os.Getenv("VIGIL_AUDIT_CHILD")})
		if st := m.Stats(); len(st) == 0 || !st[0].Active {
			fmt.Println("failed", st)
			os.Exit(1)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	requireRoot(t)
	enabled0, rules0 := auditState(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAuditRecoversAfterKill9$")
	state := t.TempDir()
	cmd.Env = append(os.Environ(), "VIGIL_AUDIT_CHILD="+state)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, _ := out.Read(line)
	if !strings.HasPrefix(string(line[:n]), "ready") {
		cmd.Process.Kill()
		cmd.Wait()
		if strings.Contains(string(line[:n]), "already delivered") {
			t.Skipf("skipping: another process holds the audit socket")
		}
		t.Fatalf("child: %q", line[:n])
	}
	_, rulesChild := auditState(t)
	cmd.Process.Kill()
	cmd.Wait()
	if rulesChild <= rules0 {
		t.Fatalf("child installed no rules (%d -> %d)", rules0, rulesChild)
	}
	buf := NewBuffer(BufferOptions{})
	m := Start(context.Background(), Options{Sink: buf, Logger: testLogger(t), Tables: []string{"process_events", "socket_events"}, StateDir: state})
	st := m.Stats()
	if len(st) == 0 || !st[0].Active || st[0].Source != "audit" {
		m.Close()
		t.Fatalf("restart after kill -9 did not take over audit: %+v", st)
	}
	if err := exec.Command("/bin/true", "after-kill9").Run(); err != nil {
		t.Fatal(err)
	}
	got := waitTable(buf, "process_events", func(r map[string]string) bool { return r["cmdline"] == "/bin/true after-kill9" })
	if err := m.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if got == nil {
		t.Fatal("no events after taking over")
	}
	if _, err := os.Stat(filepath.Join(state, "audit_state.json")); err == nil {
		t.Error("saved audit state not removed after a clean stop")
	}
	enabled1, rules1 := auditState(t)
	if enabled1 != enabled0 || rules1 != rules0 {
		t.Errorf("audit state after recovery and close: enabled %d->%d rules %d->%d", enabled0, enabled1, rules0, rules1)
	}
}
