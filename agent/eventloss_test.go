package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/event"
	"github.com/vigilhq/vigil/osquery"
)

// fakeSources stands in for the event Manager's Stats (Agent.sourceStats):
// the test sets the counters a lossy kernel or a full queue would produce.
type fakeSources struct {
	mu    sync.Mutex
	stats []event.Stats
}

func (f *fakeSources) get() []event.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Stats(nil), f.stats...)
}

func (f *fakeSources) update(fn func(audit *event.Stats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.stats[0])
}

func newFakeSources() *fakeSources {
	return &fakeSources{stats: []event.Stats{
		{Source: "audit", Active: true, Events: 100, KernelLost: 2, QueueDropped: 3, Incomplete: 4,
			Tables: []string{"process_events", "socket_events", "user_events"}},
		{Source: "cn_proc", Active: false, Error: "audit is in use"},
	}}
}

// TestSourceLossCounters: the sources' loss counters reach
// vigil_event_drops and osquery_events, and the event counters status line
// is a WARNING when rows were lost since the last one. Incomplete rows
// (argv cut) are queryable (the incomplete column) and named in the status
// line, but not counted as lost and not a WARNING by themselves.
func TestSourceLossCounters(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Options{DataDir: dir, ConfigPath: filepath.Join(dir, "none.conf"), Root: fixtureRoot(t)})
	must(t, err)
	defer a.Close()
	src := newFakeSources()
	a.sourceStats = src.get
	ctx := context.Background()

	res, err := a.Engine().Query(ctx, `SELECT name, type, active, error, events, lost, kernel_lost, socket_overflows, queue_dropped,
		sequence_gaps, incomplete FROM vigil_event_drops WHERE type = 'publisher' ORDER BY name`)
	must(t, err)
	var got []string
	for _, r := range res.Rows {
		got = append(got, strings.Join([]string{r["name"], r["active"], r["error"], r["events"], r["lost"], r["kernel_lost"],
			r["socket_overflows"], r["queue_dropped"], r["sequence_gaps"], r["incomplete"]}, ":"))
	}
	if want := "audit:1::100:5:2:0:3:0:4 cn_proc:0:audit is in use:0:0:0:0:0:0:0"; strings.Join(got, " ") != want {
		t.Errorf("vigil_event_drops publishers:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	// Incomplete rows can be found by what they are, without being lost.
	res, err = a.Engine().Query(ctx, `SELECT name FROM vigil_event_drops WHERE incomplete > 0`)
	must(t, err)
	if len(res.Rows) != 1 || res.Rows[0]["name"] != "audit" {
		t.Errorf("vigil_event_drops WHERE incomplete > 0: %v", res.Rows)
	}

	res, err = a.Engine().Query(ctx, `SELECT name, publisher, type, subscriptions, events, active FROM osquery_events
		WHERE name IN ('audit', 'cn_proc', 'process_events', 'file_events') ORDER BY name`)
	must(t, err)
	got = got[:0]
	for _, r := range res.Rows {
		got = append(got, strings.Join([]string{r["name"], r["publisher"], r["type"], r["subscriptions"], r["events"], r["active"]}, ":"))
	}
	if want := "audit:audit:publisher:3:100:1 cn_proc:cn_proc:publisher:0:0:0 file_events::subscriber:0:0:0 process_events:audit:subscriber:1:0:1"; strings.Join(got, " ") != want {
		t.Errorf("osquery_events:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	// First report: 5 lost (2 kernel + 3 queue), 4 incomplete.
	sev, msg, prev := a.eventStatsReport(eventReport{})
	if sev != 1 || !strings.Contains(msg, "event rows lost since last report: 5;") ||
		!strings.Contains(msg, "event rows delivered incomplete since last report: 4;") ||
		!strings.Contains(msg, "audit events=100 kernel_lost=2 socket_overflows=0 queue_dropped=3 sequence_gaps=0 incomplete=4") ||
		!strings.Contains(msg, "cn_proc inactive (audit is in use)") {
		t.Errorf("first report: severity %d, %s", sev, msg)
	}
	// Nothing new: INFO, no growth named.
	sev, msg, prev = a.eventStatsReport(prev)
	if sev != 0 || strings.Contains(msg, "since last report") || !strings.Contains(msg, "queue_dropped=3") {
		t.Errorf("report without change: severity %d, %s", sev, msg)
	}
	// Only incomplete rows: named, still INFO.
	src.update(func(s *event.Stats) { s.Incomplete += 2 })
	sev, msg, prev = a.eventStatsReport(prev)
	if sev != 0 || !strings.Contains(msg, "event rows delivered incomplete since last report: 2;") || strings.Contains(msg, "lost since") {
		t.Errorf("report after 2 incomplete rows: severity %d, %s", sev, msg)
	}
	// Any loss counter growing is a WARNING again.
	for _, grow := range []func(*event.Stats){
		func(s *event.Stats) { s.QueueDropped++ },
		func(s *event.Stats) { s.KernelLost++ },
		func(s *event.Stats) { s.SocketOverflows++ },
		func(s *event.Stats) { s.SequenceGaps++ },
	} {
		src.update(grow)
		sev, msg, prev = a.eventStatsReport(prev)
		if sev != 1 || !strings.Contains(msg, "event rows lost since last report: 1;") {
			t.Errorf("report after one more lost row: severity %d, %s", sev, msg)
		}
	}
	if prev.loss != 9 || prev.incomplete != 6 {
		t.Errorf("last report state %+v, want loss 9 incomplete 6", prev)
	}
}

// TestSourceLossStatusLog runs the agent (filesystem logger, no server):
// a source's queue drops reach osqueryd.status.log as a WARNING line.
func TestSourceLossStatusLog(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	must(t, os.WriteFile(cfg, []byte(`{"schedule":{"q":{"query":"SELECT 1 AS one","interval":3600}}}`), 0o600))
	logDir := filepath.Join(dir, "log")
	a, err := New(Options{DataDir: filepath.Join(dir, "data"), ConfigPath: cfg, LoggerPath: logDir, Root: fixtureRoot(t),
		Logger: testLogger(t), LoggerTLSPeriod: 50 * time.Millisecond, EventStatsInterval: 100 * time.Millisecond})
	must(t, err)
	src := newFakeSources()
	a.sourceStats = src.get
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	statusLines := func() []osquery.StatusLine {
		b, _ := os.ReadFile(filepath.Join(logDir, "osqueryd.status.log"))
		var out []osquery.StatusLine
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l osquery.StatusLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && strings.Contains(l.Message, "event counters:") {
				out = append(out, l)
			}
		}
		return out
	}
	waitFor := func(what string, ok func([]osquery.StatusLine) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if ok(statusLines()) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: event counters status lines %+v", what, statusLines())
	}
	waitFor("first report", func(ls []osquery.StatusLine) bool {
		return len(ls) > 0
	})
	if l := statusLines()[0]; l.Severity != 1 || !strings.Contains(l.Message, "event rows lost since last report: 5;") ||
		!strings.Contains(l.Message, "kernel_lost=2 socket_overflows=0 queue_dropped=3") {
		t.Fatalf("first event counters line: severity %d %q", l.Severity, l.Message)
	}
	// Later reports without growth are INFO; after 7 more queue drops a
	// WARNING names them.
	waitFor("an INFO report", func(ls []osquery.StatusLine) bool {
		return len(ls) > 1 && ls[len(ls)-1].Severity == 0
	})
	src.update(func(s *event.Stats) { s.QueueDropped += 7 })
	waitFor("a WARNING for 7 more drops", func(ls []osquery.StatusLine) bool {
		for _, l := range ls[1:] {
			if l.Severity == 1 && strings.Contains(l.Message, "event rows lost since last report: 7;") &&
				strings.Contains(l.Message, "queue_dropped=10") {
				return true
			}
		}
		return false
	})
}
