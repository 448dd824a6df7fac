package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// vigil bench agents --live-query times a live query to every simulated
// agent through the people API; --live-query-after sends it that long
// after they are all online.
func TestBenchAgentsLiveQuery(t *testing.T) {
	dir := t.TempDir()
	m := NewMain(ServerOptions{DataDir: dir, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })

	var out bytes.Buffer
	err := runBench(ctx, []string{"agents", "--data-dir", dir, "--count", "20", "--duration", "4s", "--long-poll",
		"--live-query", "SELECT 1 AS one", "--live-query-after", "2s", "--json"}, &out, os.Stderr)
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
		lq.Created <= 0 || lq.AllIn < lq.Created {
		t.Fatalf("report %s", out.Bytes())
	}
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
}
