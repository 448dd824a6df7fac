package agent

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/osquery"
)

func statusWith(srv *agenttest.Server, sub string) []osquery.StatusLine {
	var out []osquery.StatusLine
	for _, s := range srv.Status() {
		if strings.Contains(s.Message, sub) {
			out = append(out, s)
		}
	}
	return out
}

// TestBadConfigKeepsPreviousConfig: a good config, then a broken one from
// the server: the error names the JSON path, reaches the server as one
// status line, and the schedule keeps running the old queries.
func TestBadConfigKeepsPreviousConfig(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"users": {"query": "SELECT username FROM users", "interval": 1, "snapshot": true}}))
	r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice"), nil)
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "users")) > 0 }) {
		t.Fatal("the good config never produced results")
	}
	srv.SetConfig([]byte(`{"schedule": {"users": {"query": "SELECT 1", "interval": 1}, "process_events": {"query": "SELECT 1", "interval": "ten"}}}`))
	const want = `config: schedule.process_events.interval: "ten" is not an integer`
	if !srv.WaitFor(10*time.Second, func() bool { return len(statusWith(srv, want)) > 0 }) {
		t.Fatalf("no status line with %q: %+v", want, srv.Status())
	}
	before := len(linesOf(srv, "users"))
	// Several refreshes (200 ms) and scheduled runs (1 s) later...
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "users")) >= before+2 }) {
		t.Fatalf("the schedule stopped after the bad config: %d lines before, %d after", before, len(linesOf(srv, "users")))
	}
	r.stop(t)
	for _, l := range linesOf(srv, "users") {
		if l.Snapshot == nil && l.Columns["username"] != "alice" {
			t.Errorf("line from a query of the bad config: %+v", l)
		}
		for _, row := range l.Snapshot {
			if row["username"] != "alice" {
				t.Errorf("snapshot from a query of the bad config: %+v", l)
			}
		}
	}
	if got := statusWith(srv, want); len(got) != 1 || got[0].Severity != 1 || !strings.Contains(got[0].Message, "previous config stays active") {
		t.Errorf("want one warning saying the previous config stays active, got %+v", got)
	}
	if c := r.a.currentConfig(); len(c.Queries) != 1 || c.Queries[0].SQL != "SELECT username FROM users" {
		t.Errorf("active config %+v", c.Queries)
	}
}

// TestBadConfigFile: the same with --config_path: the message names the
// file.
func TestBadConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "osquery.conf")
	must(t, os.WriteFile(cfg, []byte(`{"schedule": {"users": {"query": "SELECT username FROM users", "interval": 1, "snapshot": true}}}`), 0o600))
	a, err := New(Options{DataDir: dir, ConfigPath: cfg, Root: fixtureRoot(t, "alice"), LoggerTLSPeriod: 100 * time.Millisecond,
		ConfigRefresh: 200 * time.Millisecond, Logger: testLogger(t)})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "log", name))
		return string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if cond() {
				return
			}
		}
		cancel()
		<-done
		t.Fatalf("timed out waiting for %s; status log:\n%s", what, read("osqueryd.status.log"))
	}
	waitFor("first snapshot", func() bool { return strings.Count(read("osqueryd.snapshots.log"), "\n") >= 1 })
	must(t, os.WriteFile(cfg, []byte(`{"packs": {"foo": {"queries": {"bar": {"interval": 10}}}}}`), 0o600))
	want := `config ` + cfg + `: packs.foo.queries.bar: missing \"query\"` // JSON-escaped in the log file
	waitFor("the config error in the status log", func() bool { return strings.Contains(read("osqueryd.status.log"), want) })
	n := strings.Count(read("osqueryd.snapshots.log"), "\n")
	waitFor("more snapshots with the old config", func() bool { return strings.Count(read("osqueryd.snapshots.log"), "\n") >= n+2 })
	cancel()
	must(t, <-done)
	if strings.Contains(read("osqueryd.snapshots.log"), "pack_foo_bar") {
		t.Error("a query of the bad config ran")
	}
}

// TestOversizedResultLineCounted: lines over logger_tls_max_linesize are
// dropped, counted in vigil_event_drops and reported in the counters'
// status line; smaller lines still go out.
func TestOversizedResultLineCounted(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{
		"big":   {"query": "SELECT hex(zeroblob(600)) AS big", "interval": 1, "snapshot": true},
		"small": {"query": "SELECT 1 AS one", "interval": 1, "snapshot": true},
	}))
	r := start(t, srv, t.TempDir(), fixtureRoot(t), func(o *Options) {
		o.LoggerTLSMaxLinesize = 1000
		o.EventStatsInterval = 300 * time.Millisecond
	})
	ok := srv.WaitFor(10*time.Second, func() bool {
		return len(linesOf(srv, "small")) > 0 && len(statusWith(srv, "result_log lines=")) > 0 &&
			len(statusWith(srv, "over logger_tls_max_linesize dropped")) > 0
	})
	res, err := r.a.Engine().Query(context.Background(), `SELECT too_large, lost, type FROM vigil_event_drops WHERE name = 'result_log'`)
	r.stop(t)
	if !ok {
		t.Fatalf("status lines: %+v", srv.Status())
	}
	must(t, err)
	if len(res.Rows) != 1 || res.Rows[0]["too_large"] == "0" || res.Rows[0]["too_large"] != res.Rows[0]["lost"] || res.Rows[0]["type"] != "logger" {
		t.Errorf("vigil_event_drops result_log = %v", res.Rows)
	}
	if n := len(linesOf(srv, "big")); n != 0 {
		t.Errorf("%d oversized lines sent", n)
	}
	found := false
	for _, s := range statusWith(srv, "result_log lines=") {
		if regexp.MustCompile(`result_log lines=\d+ dropped=\d+ too_large=[1-9]`).MatchString(s.Message) && s.Severity == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("no counters status line warning about too_large: %+v", statusWith(srv, "result_log"))
	}
}

// TestDistributedResultTooLarge: a live query whose result would exceed
// distributed_max_result_bytes is answered with an error status and
// message, the others of the same write still get their rows, and the
// whole write stays under the bound.
func TestDistributedResultTooLarge(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	const limit = 64 << 10
	r := start(t, srv, t.TempDir(), fixtureRoot(t), func(o *Options) { o.DistributedMaxResultBytes = limit })
	// 1,000,000 rows of ~220 bytes: 220 MB if it were collected.
	srv.AddQuery("a_huge", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000000) SELECT x, hex(zeroblob(100)) AS pad FROM c`, "")
	// 40 KB each: the first fits, the second would push the write over.
	srv.AddQuery("b_fits", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 200) SELECT x, hex(zeroblob(90)) AS pad FROM c`, "")
	srv.AddQuery("c_over", `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 200) SELECT x, hex(zeroblob(90)) AS pad FROM c`, "")
	srv.AddQuery("d_small", `SELECT 1 AS one`, "")
	if !srv.WaitFor(20*time.Second, func() bool { return len(srv.Writes()) > 0 }) {
		t.Fatal("no distributed write")
	}
	res, err := r.a.Engine().Query(context.Background(), `SELECT too_large FROM vigil_event_drops WHERE name = 'distributed'`)
	r.stop(t)
	must(t, err)
	w := srv.Writes()[0]
	for _, id := range []string{"a_huge", "c_over"} {
		if w.Statuses[id] != statusError || len(w.Queries[id]) != 0 || !strings.Contains(w.Messages[id], "query result too large") ||
			!strings.Contains(w.Messages[id], "distributed_max_result_bytes") {
			t.Errorf("%s: status %d, %d rows, message %q", id, w.Statuses[id], len(w.Queries[id]), w.Messages[id])
		}
	}
	if w.Statuses["b_fits"] != statusOK || len(w.Queries["b_fits"]) != 200 {
		t.Errorf("b_fits: status %d, %d rows", w.Statuses["b_fits"], len(w.Queries["b_fits"]))
	}
	if w.Statuses["d_small"] != statusOK || len(w.Queries["d_small"]) != 1 {
		t.Errorf("d_small: status %d, rows %v", w.Statuses["d_small"], w.Queries["d_small"])
	}
	size := 0
	for _, rows := range w.Queries {
		for _, row := range rows {
			size += len(row["x"]) + len(row["pad"]) + 20
		}
	}
	if size > limit {
		t.Errorf("results of one write total ~%d bytes, over the %d bound", size, limit)
	}
	if len(res.Rows) != 1 || res.Rows[0]["too_large"] != "2" {
		t.Errorf("vigil_event_drops distributed = %v", res.Rows)
	}
	if len(statusWith(srv, "over distributed_max_result_bytes")) == 0 {
		t.Errorf("no status line for the refused result")
	}
}
