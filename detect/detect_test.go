package detect_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// fakeState is an in-memory detect.State.
type fakeState struct {
	mu        sync.Mutex
	marks     map[string]int64
	alerts    map[string]vigil.Alert // rule_id/event_id
	offered   int                    // alerts passed to CommitAlerts, duplicates included
	commits   int
	failAfter int // CommitAlerts fails once commits reaches this (0: never)
}

func newFakeState() *fakeState {
	return &fakeState{marks: map[string]int64{}, alerts: map[string]vigil.Alert{}}
}

func (s *fakeState) Watermark(_ context.Context, ruleID, table string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marks[ruleID+"/"+table], nil
}

func (s *fakeState) CommitAlerts(_ context.Context, ruleID, table string, seq int64, alerts []vigil.Alert) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAfter > 0 && s.commits >= s.failAfter {
		return 0, errors.New("state is down")
	}
	s.commits++
	if seq < s.marks[ruleID+"/"+table] {
		return 0, fmt.Errorf("watermark of %s would go back from %d to %d", ruleID, s.marks[ruleID+"/"+table], seq)
	}
	n := 0
	for _, a := range alerts {
		s.offered++
		k := a.RuleID + "/" + a.EventID
		if _, dup := s.alerts[k]; dup {
			continue
		}
		s.alerts[k] = a
		n++
	}
	s.marks[ruleID+"/"+table] = seq
	return n, nil
}

func (s *fakeState) eventIDs(ruleID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.alerts {
		if a.RuleID == ruleID {
			out = append(out, a.EventID)
		}
	}
	sort.Strings(out)
	return out
}

// failingQuerier fails every query containing marker, standing in for a
// rule whose SQL the store rejects.
type failingQuerier struct {
	store.Querier
	marker string
}

func (f failingQuerier) Query(ctx context.Context, q string, args ...any) (*store.Rows, error) {
	if strings.Contains(q, f.marker) {
		return nil, errors.New("Binder Error: simulated failure")
	}
	return f.Querier.Query(ctx, q, args...)
}

const (
	ruleEvil = "11111111-1111-4111-8111-111111111111"
	ruleNc   = "22222222-2222-4222-8222-222222222222"
	ruleFail = "33333333-3333-4333-8333-333333333333"
	ruleFile = "44444444-4444-4444-8444-444444444444"
)

func rule(id, title, category, detection string) string {
	return fmt.Sprintf("title: %s\nid: %s\nlevel: high\nlogsource:\n  product: linux\n  category: %s\ndetection:\n%s\n", title, id, category, detection)
}

var testRules = fstest.MapFS{
	"rules/evil.yml":   {Data: []byte(rule(ruleEvil, "Evil", "process_creation", "  sel:\n    CommandLine|contains: evil\n  condition: sel"))},
	"rules/sub/nc.yml": {Data: []byte(rule(ruleNc, "Netcat", "process_creation", "  sel:\n    Image|endswith: /nc\n  filter:\n    CommandLine|contains: ' -z'\n  condition: sel and not filter"))},
	"rules/fail.yml":   {Data: []byte(rule(ruleFail, "Fails", "process_creation", "  sel:\n    CommandLine|contains: failme\n  condition: sel"))},
	"rules/file.yml":   {Data: []byte(rule(ruleFile, "File", "file_event", "  sel:\n    TargetFilename|endswith: /passwd\n  condition: sel"))},
	"rules/bad.yml":    {Data: []byte(rule("55555555-5555-4555-8555-555555555555", "Bad", "process_creation", "  sel:\n    CommandLine|contians: x\n  condition: sel"))},
	"rules/README.md":  {Data: []byte("not a rule")},
}

type harness struct {
	db    *duckdbtest.DB
	state *fakeState
	eng   *detect.Engine
	n     int
}

func newHarness(t *testing.T) *harness {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl) // file_event is deliberately missing
	st := newFakeState()
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	eng := detect.New(detect.Options{
		Querier: failingQuerier{db, "failme"},
		Dialect: store.DuckDB,
		State:   st,
		Now:     func() time.Time { return now },
	})
	errs := eng.Load(testRules, "rules")
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "rules/bad.yml:9:17: unknown modifier \"contians\"") {
		t.Fatalf("load errors %v, want one for rules/bad.yml line 9", errs)
	}
	if got := len(eng.Rules()); got != 4 {
		t.Fatalf("%d rules loaded, want 4", got)
	}
	return &harness{db: db, state: st, eng: eng}
}

// exec inserts a process event and returns its event id.
func (h *harness) exec(t *testing.T, image, cmdline string) string {
	h.n++
	id := fmt.Sprintf("ev-%03d", h.n)
	h.db.Insert(t, "process_creation", map[string]any{
		"event_id": id, "host_id": "host-1", "hostname": "web-1",
		"event_time":           time.Date(2026, 11, 27, 2, 0, h.n, 0, time.UTC),
		"process_executable":   image,
		"process_command_line": cmdline,
	})
	return id
}

func (h *harness) run(t *testing.T) int {
	n, err := h.eng.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return n
}

func TestEngineAlertsOncePerEvent(t *testing.T) {
	h := newHarness(t)
	if n := h.run(t); n != 0 {
		t.Fatalf("empty store gave %d alerts", n)
	}
	e1 := h.exec(t, "/bin/sh", "sh -c evil thing")
	h.exec(t, "/bin/ls", "ls")
	n1 := h.exec(t, "/usr/bin/nc", "nc 10.0.0.1 80")
	h.exec(t, "/usr/bin/nc", "nc -zv 10.0.0.1 80") // filtered
	if n := h.run(t); n != 2 {
		t.Fatalf("first run: %d alerts, want 2", n)
	}
	if n := h.run(t); n != 0 {
		t.Fatalf("second run without new events: %d alerts, want 0", n)
	}
	e2 := h.exec(t, "/usr/bin/nc", "evil nc") // matches both rules
	n2 := e2
	h.exec(t, "/bin/true", "true")
	if n := h.run(t); n != 2 {
		t.Fatalf("third run: %d alerts, want 2 (one per rule for the new event)", n)
	}
	if got, want := h.state.eventIDs(ruleEvil), []string{e1, e2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("evil alerts for %v, want %v", got, want)
	}
	if got, want := h.state.eventIDs(ruleNc), []string{n1, n2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("nc alerts for %v, want %v", got, want)
	}
	if h.state.offered != 4 {
		t.Errorf("engine offered %d alerts for 4 distinct matches: events were examined twice", h.state.offered)
	}
	if h.state.marks[ruleEvil+"/process_creation"] != 6 {
		t.Errorf("watermark %d, want 6", h.state.marks[ruleEvil+"/process_creation"])
	}
	// The failing rule never moved its watermark: its events will be
	// examined once it works.
	if m := h.state.marks[ruleFail+"/process_creation"]; m != 0 {
		t.Errorf("failing rule's watermark moved to %d", m)
	}

	a := h.state.alerts[ruleEvil+"/"+e1]
	if a.RuleTitle != "Evil" || a.Level != vigil.LevelHigh || a.HostID != "host-1" || a.Hostname != "web-1" ||
		a.EventTable != "process_creation" || a.Status != vigil.AlertOpen ||
		!a.EventTime.Equal(time.Date(2026, 11, 27, 2, 0, 1, 0, time.UTC)) ||
		!a.CreatedAt.Equal(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)) ||
		a.Fields["process_command_line"] != "sh -c evil thing" {
		t.Errorf("alert %+v", a)
	}
}

func TestEngineNothingSkippedWhenResultsTruncate(t *testing.T) {
	h := newHarness(t)
	h.db.Limit = 2 // the store returns at most 2 rows per query
	var want []string
	for i := 0; i < 7; i++ {
		want = append(want, h.exec(t, "/bin/sh", fmt.Sprintf("evil %d", i)))
		h.exec(t, "/bin/sh", "benign")
	}
	if n := h.run(t); n != 7 {
		t.Fatalf("%d alerts, want 7", n)
	}
	if got := h.state.eventIDs(ruleEvil); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alerts for %v, want %v", got, want)
	}
	if h.state.offered != 7 {
		t.Errorf("offered %d alerts, want 7", h.state.offered)
	}
}

func TestEngineStateFailureStopsTheRun(t *testing.T) {
	h := newHarness(t)
	h.exec(t, "/bin/sh", "evil")
	h.state.failAfter = 1
	h.state.commits = 1
	if _, err := h.eng.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "state is down") {
		t.Fatalf("RunOnce error %v, want the state failure", err)
	}
	// Once the state is back the events are examined: nothing was lost.
	h.state.failAfter = 0
	if n := h.run(t); n != 1 {
		t.Fatalf("%d alerts after recovery, want 1", n)
	}
}

func TestEngineRunStopsWithContext(t *testing.T) {
	h := newHarness(t)
	h.exec(t, "/bin/sh", "evil")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for len(h.state.eventIDs(ruleEvil)) == 0 {
		select {
		case <-deadline:
			t.Fatal("Run raised no alert")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// While Yield gives an open channel (a live query has the cores), Run
// waits; once it closes, the events that came meanwhile are examined.
func TestEngineRunWaitsWhileYielding(t *testing.T) {
	h := newHarness(t)
	h.exec(t, "/bin/sh", "evil")
	var mu sync.Mutex
	win := make(chan struct{})
	yielding := true
	eng := detect.New(detect.Options{Querier: h.db, Dialect: store.DuckDB, State: h.state, Interval: 10 * time.Millisecond,
		Yield: func() <-chan struct{} {
			mu.Lock()
			defer mu.Unlock()
			if yielding {
				return win
			}
			return nil
		}})
	eng.Load(testRules, "rules") // the bad rule's error is newHarness's to check
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	if ids := h.state.eventIDs(ruleEvil); len(ids) != 0 {
		t.Fatalf("alerted on %v while yielding", ids)
	}
	mu.Lock()
	yielding = false
	mu.Unlock()
	close(win)
	deadline := time.After(10 * time.Second)
	for len(h.state.eventIDs(ruleEvil)) == 0 {
		select {
		case <-deadline:
			t.Fatal("no alert 10 s after the window closed")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestEngineLoadsDefaultRules(t *testing.T) {
	eng := detect.New(detect.Options{State: newFakeState()})
	if errs := eng.Load(rules.FS, "."); len(errs) > 0 {
		t.Fatalf("default rules: %v", errs)
	}
	got := eng.Rules()
	if len(got) < 3 {
		t.Fatalf("%d default rules", len(got))
	}
	for _, r := range got {
		if !r.Enabled || r.Source == "" || r.Level == "" {
			t.Errorf("rule %+v", r)
		}
	}
	// Loading the same rules again is refused per rule.
	if errs := eng.Load(rules.FS, "."); len(errs) != len(got) {
		t.Errorf("reloading gave %d errors, want %d", len(errs), len(got))
	}
}

func TestEngineRunsCorrelations(t *testing.T) {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl)
	st := newFakeState()
	eng := detect.New(detect.Options{Querier: db, State: st})
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
	if got := eng.Rules(); len(got) != 1 || got[0].ID != "77777777-7777-4777-8777-777777777777" {
		t.Fatalf("rules %+v: the referenced rule must not run on its own", got)
	}
	base := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	n := 0
	add := func(user string, minute int) string {
		n++
		id := fmt.Sprintf("c-%02d", n)
		db.Insert(t, "process_creation", map[string]any{"event_id": id, "host_id": "h1", "hostname": "web-1",
			"event_time": base.Add(time.Duration(minute) * time.Minute), "user_name": user, "process_command_line": "sudo -k ls"})
		return id
	}
	add("alice", 0)
	add("alice", 2)
	add("bob", 3)
	third := add("alice", 4)
	run := func() int {
		n, err := eng.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := run(); got != 1 {
		t.Fatalf("%d alerts, want 1", got)
	}
	a := st.alerts["77777777-7777-4777-8777-777777777777/"+third]
	if a.Hostname != "web-1" || a.Fields["User"] != "alice" || fmt.Sprint(a.Fields["correlation_value"]) != "3" {
		t.Errorf("alert %+v", a)
	}
	add("alice", 5) // still the same burst: no new alert
	if got := run(); got != 0 {
		t.Fatalf("%d alerts for the same burst, want 0", got)
	}
	add("alice", 30)
	add("alice", 31)
	add("alice", 32) // a new burst, more than a timespan later
	if got := run(); got != 1 {
		t.Fatalf("%d alerts for the second burst, want 1", got)
	}
	if got := run(); got != 0 {
		t.Fatalf("%d alerts without new events, want 0", got)
	}
}

// cancellingQuerier cancels the run when it meets marker, as a server
// stopping mid-run does, and fails that query as the store then does.
type cancellingQuerier struct {
	store.Querier
	marker string
	cancel context.CancelFunc
}

func (c cancellingQuerier) Query(ctx context.Context, q string, args ...any) (*store.Rows, error) {
	if strings.Contains(q, c.marker) {
		c.cancel()
		return nil, fmt.Errorf("INTERRUPT Error: Interrupted!: %w", ctx.Err())
	}
	return c.Querier.Query(ctx, q, args...)
}

// A run stopped mid-way returns the context's error; the rule whose query
// the stop interrupted is not counted as failing.
func TestEngineStopIsNotARuleFailure(t *testing.T) {
	db := duckdbtest.Open(t)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(t, tbl)
	db.Insert(t, "process_creation", map[string]any{"event_id": "ev-1", "host_id": "host-1", "hostname": "web-1",
		"event_time": time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC), "process_command_line": "failme"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng := detect.New(detect.Options{Querier: cancellingQuerier{db, "failme", cancel}, Dialect: store.DuckDB, State: newFakeState()})
	eng.Load(testRules, "rules")
	if _, err := eng.RunOnce(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunOnce returned %v, want context.Canceled", err)
	}
	for _, s := range eng.Stats() {
		if s.Failures != 0 {
			t.Errorf("rule %s counted %d failures for a stopped run", s.RuleID, s.Failures)
		}
	}
}
