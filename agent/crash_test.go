package agent

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"crypto/x509"

	"github.com/vigilhq/vigil/agent/agenttest"
)

// TestKill9KeepsSpooledResults runs the agent in a child process (this test
// binary re-executed) against a server that refuses logs with 503, so that
// results pile up in the spool; kills it with SIGKILL once the first run's
// results are spooled; then starts the agent again on the same data
// directory against a server that accepts logs, and checks every spooled
// line arrives exactly once and nothing is re-emitted; a status line
// (WARNING) spooled before the kill arrives too.
func TestKill9KeepsSpooledResults(t *testing.T) {
	if os.Getenv("VIGIL_AGENT_CHILD") != "" {
		childAgent()
		return
	}
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	// "bad" fails (a WARNING status line) and runs before "users".
	srv.SetConfig(schedule(map[string]map[string]any{
		"users": {"query": "SELECT username FROM users", "interval": 1},
		"bad":   {"query": "SELECT * FROM no_such_table", "interval": 3600},
	}))
	srv.Fail503(1 << 30)
	var users []string
	for i := 0; i < 300; i++ {
		users = append(users, "u"+strconv.Itoa(i))
	}
	root := fixtureRoot(t, users...)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	data := filepath.Join(dir, "data")

	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9KeepsSpooledResults$")
	cmd.Env = append(os.Environ(), "VIGIL_AGENT_CHILD=1", "VIGIL_URL="+srv.URL, "VIGIL_CA="+ca, "VIGIL_DATA="+data, "VIGIL_ROOT="+root)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	must(t, cmd.Start())
	// The query state is saved only after its lines are spooled and synced.
	state := filepath.Join(data, "results", hex.EncodeToString([]byte("users"))+".json")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(state); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("child never saved its query state")
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()
	if n := len(srv.Results()); n != 0 {
		t.Fatalf("server accepted %d lines while refusing", n)
	}

	srv.Fail503(0)
	// Without "bad": a status line about it can only come from the
	// killed process's spool.
	srv.SetConfig(schedule(map[string]map[string]any{"users": {"query": "SELECT username FROM users", "interval": 1}}))
	r := start(t, srv, data, root, nil)
	if !srv.WaitFor(20*time.Second, func() bool { return len(linesOf(srv, "users")) >= len(users) }) {
		t.Fatalf("after restart the server got %d of %d lines", len(linesOf(srv, "users")), len(users))
	}
	time.Sleep(2 * time.Second) // further runs must not re-emit
	r.stop(t)
	seen := map[string]int{}
	for _, l := range linesOf(srv, "users") {
		seen[l.Columns["username"]]++
		if l.Counter != 0 || l.Action != "added" {
			t.Fatalf("line %+v", l)
		}
	}
	for _, u := range users {
		if seen[u] != 1 {
			t.Errorf("%s delivered %d times", u, seen[u])
		}
	}
	if n := len(statusWith(srv, "scheduled query failed name=bad")); n != 1 {
		t.Errorf("the killed agent's status line arrived %d times, want 1", n)
	}
}

func childAgent() {
	pemBytes, _ := os.ReadFile(os.Getenv("VIGIL_CA"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	a, err := New(Options{
		ServerURL: os.Getenv("VIGIL_URL"), RootCAs: pool, EnrollSecret: secret,
		DataDir: os.Getenv("VIGIL_DATA"), Root: os.Getenv("VIGIL_ROOT"),
		LoggerTLSPeriod: 50 * time.Millisecond,
	})
	if err != nil {
		os.Exit(3)
	}
	a.Run(context.Background()) // until killed
	os.Exit(4)
}
