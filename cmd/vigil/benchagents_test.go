package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// vigil bench agents --live-query times a live query to every simulated
// agent through the people API; --live-query-after sends it that long
// after they are all online.
func TestBenchAgentsLiveQuery(t *testing.T) {
	// The live query is followed by a child process: vigil bench live-query.
	bin := vigilBinary(t)
	benchExecutable = func() (string, error) { return bin, nil }
	t.Cleanup(func() { benchExecutable = os.Executable })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// serve starts a server of its own: agents of an earlier run would be
	// online hosts that never answer.
	serve := func() (*Main, string) {
		dir := t.TempDir()
		m := NewMain(ServerOptions{DataDir: dir, Listen: "127.0.0.1:0",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := m.Run(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m, dir
	}
	bench := func(dir, events string) *liveResult {
		t.Helper()
		var out bytes.Buffer
		err := runBench(ctx, []string{"agents", "--data-dir", dir, "--count", "20", "--duration", "4s", "--long-poll",
			"--live-query", "SELECT 1 AS one", "--live-query-after", "2s", "--live-query-events", events, "--json"}, &out, os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Report    struct{ Enrolled int }
			LiveQuery *liveResult `json:"live_query"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("%v: %s", err, out.Bytes())
		}
		lq := rep.LiveQuery
		if rep.Report.Enrolled != 20 || lq == nil || lq.Error != "" || lq.Hosts != 20 || lq.Done.OK != 20 ||
			lq.Events != events || lq.Created <= 0 || lq.AllIn < lq.Created || lq.Written <= 0 || lq.Written > lq.AllIn {
			t.Fatalf("report %s", out.Bytes())
		}
		return lq
	}
	m, dir := serve()
	bench(dir, "summary")
	// The query was created 2 s after the last agent enrolled, not at
	// once (the wait for them polls every second).
	hosts, err := m.state.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, h := range hosts {
		if h.EnrolledAt.After(last) {
			last = h.EnrolledAt
		}
	}
	cs, err := m.state.ListCampaigns(ctx, 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("campaigns %v, %v", cs, err)
	}
	if gap := cs[0].CreatedAt.Sub(last); gap < 2*time.Second {
		t.Errorf("live query created %v after the last enrollment, want at least 2s", gap)
	}
	// Followed by the full stream, as vigil query does, a result comes first.
	_, dir2 := serve()
	if lq := bench(dir2, "all"); lq.FirstIn <= 0 || lq.FirstIn > lq.AllIn {
		t.Errorf("first result after %v, all after %v", lq.FirstIn, lq.AllIn)
	}
	err = runBench(ctx, []string{"agents", "--data-dir", dir, "--live-query", "SELECT 1", "--live-query-events", "rows"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--live-query-events "rows": want summary or all`) {
		t.Errorf("--live-query-events rows: %v", err)
	}
	// bench live-query on its own, against the fleet of the first run:
	// its agents are gone, so their hosts time out; refused input first.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"live-query", "--data-dir", dir, "--events", "rows"}, `--events "rows": want summary or all`},
		{[]string{"live-query", "--data-dir", t.TempDir()}, "profile"},
	} {
		if err := runBench(ctx, c.args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench %v: %v, want %q", c.args, err, c.want)
		}
	}
}
