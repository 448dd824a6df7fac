// Package chtest starts a throwaway ClickHouse server for tests: the
// Debian clickhouse-server binary as a plain process on loopback, with a
// copy of the system configuration whose paths point into a temporary
// directory and whose ports are free ones. Only tests import it.
package chtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Binary and SystemConfig are where Debian's package puts them.
var (
	Binary       = "clickhouse-server"
	SystemConfig = "/etc/clickhouse-server"
)

// ErrNotInstalled means the server binary or its configuration is missing;
// tests skip with it.
var ErrNotInstalled = errors.New("chtest: clickhouse-server is not installed (apt-get install -y clickhouse-server clickhouse-client)")

// Server is a running test server.
type Server struct {
	URL    string // of the HTTP interface
	Dir    string
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a server with its data in dir and waits until it answers.
func Start(ctx context.Context, dir string) (*Server, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	cfg, err := os.ReadFile(filepath.Join(SystemConfig, "config.xml"))
	if err != nil {
		return nil, ErrNotInstalled
	}
	users, err := os.ReadFile(filepath.Join(SystemConfig, "users.xml"))
	if err != nil {
		return nil, ErrNotInstalled
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data") + "/"
	logs := filepath.Join(dir, "log") + "/"
	r := strings.NewReplacer(
		"/var/lib/clickhouse/", data,
		"/var/log/clickhouse-server/", logs,
		"<http_port>8123</http_port>", fmt.Sprintf("<http_port>%d</http_port>", ports[0]),
		"<tcp_port>9000</tcp_port>", fmt.Sprintf("<tcp_port>%d</tcp_port>", ports[1]),
		"<interserver_http_port>9009</interserver_http_port>", fmt.Sprintf("<interserver_http_port>%d</interserver_http_port>", ports[2]),
	)
	conf := r.Replace(string(cfg))
	for _, d := range []string{data, logs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), users, 0o600); err != nil {
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Dir: dir, bin: bin}
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// launch runs the server with the configuration in s.Dir and waits until
// it answers.
func (s *Server) launch(ctx context.Context) error {
	dir := s.Dir
	out, err := os.OpenFile(filepath.Join(dir, "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("chtest: starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			errLog, _ := os.ReadFile(filepath.Join(dir, "log", "clickhouse-server.err.log"))
			return fmt.Errorf("chtest: clickhouse-server exited: %s %s", tail(log), tail(errLog))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return errors.New("chtest: clickhouse-server did not answer /ping within 30s")
		}
	}
}

// Pause stops the server process (SIGSTOP): connections hang, as with a
// server that is overloaded or a network that drops packets.
func (s *Server) Pause() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// Kill kills the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts the server again on the same data directory and ports
// after Stop or Kill.
func (s *Server) Restart(ctx context.Context) error {
	select {
	case <-s.exited:
	default:
		return errors.New("chtest: restart: the server is still running")
	}
	return s.launch(ctx)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
