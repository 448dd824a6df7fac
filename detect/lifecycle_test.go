package detect_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/state"
)

var _ detect.Lifecycle = (*state.DB)(nil)

// crashingState fails every commit once crashAt commits went through,
// standing in for a server killed between two pages of a run.
type crashingState struct {
	*state.DB
	mu      sync.Mutex
	commits int
	crashAt int // 0: never
}

func (c *crashingState) CommitMatches(ctx context.Context, ruleID, table string, seq int64, m []vigil.Alert, g []string, w time.Duration) ([]vigil.Alert, int, int, error) {
	c.mu.Lock()
	if c.crashAt > 0 && c.commits >= c.crashAt {
		c.mu.Unlock()
		return nil, 0, 0, errors.New("killed")
	}
	c.commits++
	c.mu.Unlock()
	return c.DB.CommitMatches(ctx, ruleID, table, seq, m, g, w)
}

func openStateFile(t *testing.T, path string) *state.DB {
	t.Helper()
	st, err := state.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func allAlerts(t *testing.T, st *state.DB) []vigil.Alert {
	t.Helper()
	a, err := st.ListAlerts(context.Background(), state.AlertFilter{Limit: state.MaxAlertLimit})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestEngineRestartMidStreamAlertsOnce restarts the engine (new Engine,
// state reopened from its file, same store) several times while events
// keep arriving, once in the middle of a paged run, and checks that every
// matching event alerted exactly once.
func TestEngineRestartMidStreamAlertsOnce(t *testing.T) {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl)
	db.Limit = 3 // runs go in pages, so a crash can fall between two
	path := filepath.Join(t.TempDir(), "state.db")
	rules := fstest.MapFS{"r/evil.yml": {Data: []byte(rule(ruleEvil, "Evil", "process_creation", "  sel:\n    CommandLine|contains: evil\n  condition: sel"))}}

	var want []string
	n := 0
	insert := func(k int) {
		for i := 0; i < k; i++ {
			n++
			id := fmt.Sprintf("ev-%04d", n)
			cmd := "ls"
			if n%3 == 0 {
				cmd = "sh -c evil"
				want = append(want, id)
			}
			db.Insert(t, "process_creation", map[string]any{"event_id": id, "host_id": "h1", "hostname": "web-1",
				"event_time": time.Unix(int64(n), 0).UTC(), "ingested_at": time.Now().UTC(), "process_command_line": cmd})
		}
	}
	start := func(crashAt int) (*crashingState, *detect.Engine) {
		cs := &crashingState{DB: openStateFile(t, path), crashAt: crashAt}
		eng := detect.New(detect.Options{Querier: db, State: cs})
		if errs := eng.Load(rules, "r"); len(errs) > 0 {
			t.Fatal(errs)
		}
		return cs, eng
	}
	ctx := context.Background()

	cs, eng := start(0)
	insert(20)
	if _, err := eng.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	cs.Close()

	// Crash after two pages of the next run: 30 new events, 10 pages.
	cs, eng = start(2)
	insert(30)
	if _, err := eng.RunOnce(ctx); err == nil {
		t.Fatal("the crashing run succeeded")
	}
	cs.Close()
	probe := openStateFile(t, path)
	early := len(allAlerts(t, probe))
	probe.Close() // one handle at a time on a SQLite state, as one server
	if early >= len(want) {
		t.Fatalf("%d alerts after the crash: the crash came too late to test anything", early)
	}

	for round := 0; round < 3; round++ {
		cs, eng = start(0)
		insert(7)
		if _, err := eng.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := eng.RunOnce(ctx); err != nil { // nothing new
			t.Fatal(err)
		}
		cs.Close()
	}
	st := openStateFile(t, path)
	defer st.Close()
	var got []string
	for _, a := range allAlerts(t, st) {
		got = append(got, a.EventID)
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("alerts on %v\nwant exactly %v", got, want)
	}
	if wm, _ := st.Watermark(ctx, ruleEvil, "process_creation"); wm != int64(n) {
		t.Errorf("watermark %d, want %d", wm, n)
	}
}

// TestCorrelationAcrossRuns feeds one correlation's events in two runs.
func TestCorrelationAcrossRuns(t *testing.T) {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl)
	st := openStateFile(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	eng := detect.New(detect.Options{Querier: db, State: st, DedupeWindow: time.Hour})
	src := `title: Sudo failure
id: 66666666-6666-4666-8666-666666666666
name: sudo_fail
logsource: {product: linux, category: process_creation}
detection:
  sel: {CommandLine|contains: 'sudo -k'}
  condition: sel
---
title: Repeated sudo failures
id: 77777777-7777-4777-8777-777777777777
level: high
correlation:
  type: event_count
  rules: [sudo_fail]
  group-by: [User]
  timespan: 10m
  condition: {gte: 3}
`
	if errs := eng.Load(fstest.MapFS{"r/corr.yml": {Data: []byte(src)}}, "r"); len(errs) > 0 {
		t.Fatal(errs)
	}
	base := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	k := 0
	add := func(user string, minute int) string {
		k++
		id := fmt.Sprintf("c-%02d", k)
		db.Insert(t, "process_creation", map[string]any{"event_id": id, "host_id": "h1", "hostname": "web-1",
			"event_time": base.Add(time.Duration(minute) * time.Minute), "user_name": user, "process_command_line": "sudo -k ls"})
		return id
	}
	run := func() int {
		n, err := eng.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	add("alice", 0)
	add("alice", 3)
	add("bob", 4)
	if got := run(); got != 0 {
		t.Fatalf("run 1: %d alerts before the threshold", got)
	}
	third := add("alice", 6) // the third within 10 minutes, in a later run
	if got := run(); got != 1 {
		t.Fatalf("run 2: %d alerts, want 1", got)
	}
	add("alice", 7) // same burst: counted on the open alert, not a new one
	if got := run(); got != 0 {
		t.Fatalf("run 3: %d alerts, want 0", got)
	}
	// A burst whose first two events came before a restart, the third after.
	add("bob", 40)
	add("bob", 41)
	run()
	eng2 := detect.New(detect.Options{Querier: db, State: st, DedupeWindow: time.Hour})
	if errs := eng2.Load(fstest.MapFS{"r/corr.yml": {Data: []byte(src)}}, "r"); len(errs) > 0 {
		t.Fatal(errs)
	}
	bobs := add("bob", 45)
	if n, err := eng2.RunOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("after restart: %d alerts (%v), want 1", n, err)
	}
	alerts := allAlerts(t, st)
	if len(alerts) != 2 {
		t.Fatalf("alerts %+v", alerts)
	}
	byEvent := map[string]vigil.Alert{}
	for _, a := range alerts {
		byEvent[a.EventID] = a
	}
	if byEvent[third].Fields["User"] != "alice" || byEvent[bobs].Fields["User"] != "bob" {
		t.Errorf("alerts %+v", alerts)
	}
}

type recorder struct {
	mu       sync.Mutex
	notified []vigil.Alert
	runs     map[string]int
	lat      []time.Duration
}

func (r *recorder) Notify(_ context.Context, a []vigil.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notified = append(r.notified, a...)
}

func (r *recorder) RuleRun(id string, _ time.Duration, _ int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[id]++
}

func (r *recorder) AlertLatency(_ string, l time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, l)
}

func TestEngineDedupeSuppressNotifyAndLatency(t *testing.T) {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl)
	st := openStateFile(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	st.SetClock(func() time.Time { return now })
	rec := &recorder{}
	eng := detect.New(detect.Options{Querier: db, State: st, DedupeWindow: 10 * time.Minute, Notifier: rec, Observer: rec,
		Now: func() time.Time { return now }})
	if errs := eng.Load(fstest.MapFS{"r/evil.yml": {Data: []byte(rule(ruleEvil, "Evil", "process_creation", "  sel:\n    CommandLine|contains: evil\n  condition: sel"))}}, "r"); len(errs) > 0 {
		t.Fatal(errs)
	}
	ins := func(id, host, user string, ingested time.Time) {
		db.Insert(t, "process_creation", map[string]any{"event_id": id, "host_id": host, "hostname": host,
			"event_time": ingested, "ingested_at": ingested, "user_name": user, "process_command_line": "evil"})
	}
	if _, err := st.AddSuppression(context.Background(), state.Suppression{Host: "h3", Reason: "lab", ExpiresAt: now.Add(time.Hour)}, "alice", ""); err != nil {
		t.Fatal(err)
	}
	ins("a", "h1", "x", now.Add(-2*time.Second))
	ins("b", "h1", "y", now.Add(-4*time.Second)) // same rule and host: deduped
	ins("c", "h2", "x", now.Add(-6*time.Second))
	ins("d", "h3", "x", now.Add(-1*time.Second)) // suppressed
	if n, err := eng.RunOnce(context.Background()); err != nil || n != 2 {
		t.Fatalf("RunOnce %d %v, want 2 alerts", n, err)
	}
	s := eng.Stats()
	if len(s) != 1 || s[0].Runs != 1 || s[0].Matches != 4 || s[0].Alerts != 2 || s[0].Deduped != 1 || s[0].Suppressed != 1 ||
		s[0].LatencyMax != 6*time.Second || s[0].LatencyP50 != 2*time.Second {
		t.Errorf("stats %+v", s)
	}
	if len(rec.notified) != 2 || rec.notified[0].ID == 0 || rec.notified[0].EventID != "a" || rec.runs[ruleEvil] != 1 || len(rec.lat) != 2 {
		t.Errorf("notified %+v runs %v latencies %v", rec.notified, rec.runs, rec.lat)
	}
	d, _ := st.AlertDedupes(context.Background(), []int64{rec.notified[0].ID})
	if d[rec.notified[0].ID].MatchCount != 2 {
		t.Errorf("dedupe %+v", d)
	}
}
