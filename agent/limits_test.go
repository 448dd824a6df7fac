package agent

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/spool"
	"github.com/vigilhq/vigil/osquery"
)

// TestScheduledResultBounded: a scheduled query generating millions of
// rows stops at schedule_max_result_bytes (the config's option, here 1
// MiB): memory stays bounded, nothing is logged for the run, the refusal
// is counted (vigil_event_drops, status line) and a smaller query next to
// it still logs.
func TestScheduledResultBounded(t *testing.T) {
	const huge = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000000) SELECT x, 'some padding to make rows wider' AS pad FROM c"
	a := configuredAgent(t, t.TempDir(), map[string]any{
		"options": map[string]any{"schedule_max_result_bytes": 1 << 20},
		"schedule": map[string]any{
			"huge":  map[string]any{"query": huge, "interval": 60},
			"small": map[string]any{"query": "SELECT 1 AS one", "interval": 60},
		},
	}, nil)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	a.sched.runQuery(context.Background(), a.sched.byName(t, "huge"))
	runtime.ReadMemStats(&m1)
	// Unbounded, 5M rows held as maps would allocate several GB.
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 {
		t.Errorf("bounded query allocated %d MB", alloc>>20)
	}
	if n := a.schedTooLarge.Load(); n != 1 {
		t.Errorf("too-large counter %d, want 1", n)
	}
	if n := a.results.Len(); n != 0 {
		t.Errorf("%d result lines spooled for a refused result", n)
	}
	a.sched.runQuery(context.Background(), a.sched.byName(t, "small"))
	if n := a.results.Len(); n != 1 {
		t.Errorf("small query spooled %d lines, want 1", n)
	}
	res, err := a.Engine().Query(context.Background(), "SELECT too_large, lost FROM vigil_event_drops WHERE name = 'schedule'")
	must(t, err)
	if len(res.Rows) != 1 || res.Rows[0]["too_large"] != "1" {
		t.Errorf("vigil_event_drops schedule = %v", res.Rows)
	}
	msg := statusMessages(t, a.status)
	if !strings.Contains(msg, "over schedule_max_result_bytes") || !strings.Contains(msg, "name=huge") || !strings.Contains(msg, "max=1048576") {
		t.Errorf("no status line for the refused result: %s", msg)
	}
	if c, _ := a.eventCounters(); !strings.Contains(c, "schedule lines=0 dropped=0 too_large=1") {
		t.Errorf("counters status line: %s", c)
	}
}

// TestStatusLineDurableWhenLogged: a WARNING is on disk (synced) when the
// log call returns, not only at the next shipment.
func TestStatusLineDurableWhenLogged(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{"q": {"query": "SELECT 1", "interval": 60}}, nil)
	before := a.status.Stats()
	a.log.Warn("something to report", "detail", 42)
	after := a.status.Stats()
	if after.Appended != before.Appended+1 {
		t.Fatalf("status lines appended %d → %d", before.Appended, after.Appended)
	}
	assertSynced(t, a.status, "status line after the log call returned")
	if after.Syncs <= before.Syncs {
		t.Fatalf("no fsync for the status line (syncs %d → %d)", before.Syncs, after.Syncs)
	}
	a.statusLine(0, "counters")
	assertSynced(t, a.status, "counter status line")
	// The check can fail: a record appended without a Sync is not synced.
	_, err := a.status.Append([]byte(`{"raw":1}`))
	must(t, err)
	if synced(t, a.status) {
		t.Fatal("synced() reports a record appended without Sync as on disk")
	}
}

// assertSynced fails unless every record appended to sp is already on
// disk (see synced).
func assertSynced(t *testing.T, sp *spool.Spool, what string) {
	t.Helper()
	if !synced(t, sp) {
		t.Fatalf("%s not on disk yet when the call returned", what)
	}
}

// synced reports whether every record appended to sp was on disk: if so a
// Sync has nothing to do and does not fsync (Stats.Syncs stays). Nothing
// else syncs sp meanwhile (the agent is not running).
func synced(t *testing.T, sp *spool.Spool) bool {
	t.Helper()
	before := sp.Stats().Syncs
	must(t, sp.Sync())
	return sp.Stats().Syncs == before
}

// TestConfigOptionsApplied: buffered_log_max and the watchdog_* options of
// the config take effect; options the agent cannot honour are reported by
// name.
func TestConfigOptionsApplied(t *testing.T) {
	a := configuredAgent(t, t.TempDir(), map[string]any{
		"options": map[string]any{
			"watchdog_utilization_limit": 1,
			"watchdog_latency_limit":     3,
			"watchdog_memory_limit":      50,
			"watchdog_delay":             120,
			"events_max":                 1000,
			"events_expiry":              60,
		},
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}},
	}, func(o *Options) { o.WatchdogUtilizationLimit = 50 })

	// The config's limits override the flags': 1% of 2 cores over 3 s is
	// 60 ms, so 100 ms in one check denylists (50% would not).
	l := a.watchdogLimits()
	if l.cpuPct != 1 || l.latency != 3*time.Second || l.memBytes != 50<<20 {
		t.Errorf("limits %+v, want 1%%, 3 s, 50 MB", l)
	}
	w := a.sched.wd
	w.cores, w.interval = 2, 3*time.Second
	clock := &fakeCPU{}
	w.threadCPU = clock.reader
	run := w.begin(a.sched.byName(t, "q"), func() {})
	clock.add(100 * time.Millisecond)
	w.check()
	w.end(run)
	if !denylisted(a, "q") {
		t.Error("config's watchdog_utilization_limit not applied")
	}

	msg := statusMessages(t, a.status)
	if !strings.Contains(msg, "option=watchdog_delay") {
		t.Errorf("no warning naming watchdog_delay: %s", msg)
	}
	// Honoured, so not reported as ignored.
	for _, honoured := range []string{"option=events_max", "option=events_expiry"} {
		if strings.Contains(msg, honoured) {
			t.Errorf("%s reported as ignored: %s", honoured, msg)
		}
	}
	if m, e := a.Events().Limits(); m != 1000 || e != 60*time.Second {
		t.Errorf("event buffer limits %d %v, want the config's 1000 and 60 s", m, e)
	}

	// buffered_log_max bounds both spools.
	b := configuredAgent(t, t.TempDir(), map[string]any{
		"options":  map[string]any{"buffered_log_max": 3},
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}},
	}, nil)
	var lines []osquery.ResultLine
	for i := 0; i < 10; i++ {
		lines = append(lines, osquery.ResultLine{Name: "q", Action: osquery.ActionSnapshot})
		b.log.Warn("status line", "i", i)
	}
	_, err := b.spoolResults(lines)
	must(t, err)
	if st := b.results.Stats(); st.Pending != 3 || st.Dropped != 7 {
		t.Errorf("result spool pending %d dropped %d, want 3 and 7 (buffered_log_max 3)", st.Pending, st.Dropped)
	}
	if st := b.status.Stats(); st.Pending != 3 {
		t.Errorf("status spool pending %d, want 3 (buffered_log_max 3)", st.Pending)
	}
}
