package main

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vigilhq/vigil/state/pgtest"
)

// Two `vigil server` processes' wiring on one PostgreSQL state (--state):
// the host enrolled through replica A is listed by replica B, and a live
// query started on B reaches the agent long-polling A and comes back to
// B's caller.
func TestReplicasOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	start := func(withAgent bool) string {
		dir := t.TempDir()
		m := NewMain(ServerOptions{
			DataDir: dir, Listen: "127.0.0.1:0", State: url, WithAgent: withAgent,
			DetectInterval: time.Hour, ScheduleInterval: time.Second,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t.Cleanup(cancel)
		if err := m.Run(ctx); err != nil {
			t.Fatalf("replica: %v", err)
		}
		t.Cleanup(func() { m.Close() })
		return dir
	}
	_ = start(true) // A: the agent of this host enrolls through it
	dirB := start(false)
	hostname, _ := os.Hostname()

	eventually(t, "the host enrolled through A listed by B", time.Minute, func() (bool, string) {
		out, err := cli(t, "hosts", "--data-dir", dirB, "--json")
		if err != nil {
			return false, err.Error()
		}
		hosts := jsonLines(t, out)
		return len(hosts) == 1 && hosts[0]["hostname"] == hostname && hosts[0]["online"] == true, out
	})
	pid := strconv.Itoa(os.Getpid())
	out, err := cli(t, "query", "--data-dir", dirB, "--json", "SELECT pid FROM processes WHERE pid = "+pid)
	if err != nil {
		t.Fatal(err)
	}
	rows := queryRows(t, out)
	if len(rows) != 1 || rows[0]["pid"] != pid {
		t.Fatalf("a live query through B returned %v (output %q)", rows, out)
	}
}
