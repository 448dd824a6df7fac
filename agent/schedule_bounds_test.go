package agent

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wideRows is a differential query of n rows of ~pad bytes each.
func wideRows(n, pad int) string {
	return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < " + itoa(n) +
		") SELECT x, printf('%.*c', " + itoa(pad) + ", 'x') AS pad FROM c"
}

// TestScheduledLargeResultLoggedByDefault: a differential query whose
// result is ~15.5 MB (a deb_package_files inventory's size), over
// distributed_max_result_bytes (8 MiB − 64 KiB) but not over the default
// scheduled bound, is logged in full under the defaults and its state is
// saved, so that the next identical run logs nothing.
func TestScheduledLargeResultLoggedByDefault(t *testing.T) {
	const rows, pad = 3900, 4000 // ~15.6 MB of JSON
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"big": {"query": wideRows(rows, pad), "interval": 60},
	}, nil)
	sq := a.sched.byName(t, "big")
	a.sched.runQuery(context.Background(), sq)
	if n := a.schedTooLarge.Load(); n != 0 {
		t.Fatalf("%d results refused as too large under the defaults", n)
	}
	if n := a.results.Len(); n != rows {
		t.Fatalf("%d result lines spooled, want %d (one added row each)", n, rows)
	}
	if st := a.results.Stats(); st.Pending != rows {
		t.Fatalf("spool stats %+v", st)
	}
	st, err := a.sched.store.load("big")
	must(t, err)
	if st == nil || len(st.Rows) != rows {
		t.Fatalf("differential state not saved after the large result was logged: %v", st != nil)
	}
	a.sched.runQuery(context.Background(), sq)
	if n := a.results.Len(); n != rows {
		t.Errorf("an unchanged result logged again: %d lines", n-rows)
	}
}

// TestScheduledResultOverBoundKeepsState: a result over
// schedule_max_result_bytes (here 1 MiB) is refused, counted and reported
// once; the query's differential state stays the last result logged, so
// the next run that fits logs exactly the change since then.
func TestScheduledResultOverBoundKeepsState(t *testing.T) {
	// The number of rows is the size of a file the test rewrites; the SQL
	// (and so the state's identity) never changes.
	const sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < (SELECT size FROM file WHERE path = '/etc/rows')) SELECT x, printf('%.*c', 1000, 'x') AS pad FROM c"
	a := configuredAgent(t, t.TempDir(), map[string]any{
		"options":  map[string]any{"schedule_max_result_bytes": 1 << 20},
		"schedule": map[string]any{"grow": map[string]any{"query": sql, "interval": 60}},
	}, nil)
	if got := a.scheduleMaxResultBytes(); got != 1<<20 {
		t.Fatalf("schedule_max_result_bytes not applied: bound %d", got)
	}
	rowsFile := filepath.Join(a.opts.Root, "etc", "rows")
	setRows := func(n int) { must(t, os.WriteFile(rowsFile, []byte(strings.Repeat("r", n)), 0o644)) }
	sq := a.sched.byName(t, "grow")

	setRows(100)
	a.sched.runQuery(context.Background(), sq)
	if n := a.results.Len(); n != 100 {
		t.Fatalf("first run spooled %d lines, want 100", n)
	}
	saved, err := os.ReadFile(a.sched.store.path("grow"))
	must(t, err)

	setRows(5000) // ~5 MB
	a.sched.runQuery(context.Background(), sq)
	if n := a.schedTooLarge.Load(); n != 1 {
		t.Fatalf("too-large counter %d, want 1", n)
	}
	if n := a.results.Len(); n != 100 {
		t.Fatalf("%d lines spooled for a refused result", n-100)
	}
	now, err := os.ReadFile(a.sched.store.path("grow"))
	must(t, err)
	if string(now) != string(saved) {
		t.Fatal("a refused result changed the differential state")
	}
	msg := statusMessages(t, a.status)
	if strings.Count(msg, "over schedule_max_result_bytes") != 1 || !strings.Contains(msg, "name=grow") || !strings.Contains(msg, "max=1048576") {
		t.Errorf("want one status line for the refused result: %s", msg)
	}
	res, err := a.Engine().Query(context.Background(), "SELECT too_large FROM vigil_event_drops WHERE name = 'schedule'")
	must(t, err)
	if len(res.Rows) != 1 || res.Rows[0]["too_large"] != "1" {
		t.Errorf("vigil_event_drops schedule = %v", res.Rows)
	}

	setRows(101)
	a.sched.runQuery(context.Background(), sq)
	recs, err := a.results.Peek(1000, 1<<30)
	must(t, err)
	if len(recs) != 101 {
		t.Fatalf("after the refusal, %d lines spooled, want the 1 change since the last logged result", len(recs)-100)
	}
	if d := string(recs[100].Data); !strings.Contains(d, `"action":"added"`) || !strings.Contains(d, `"x":"101"`) {
		t.Errorf("the change logged: %s", d)
	}
}

// TestScheduleMaxResultBytesDefault: half the watchdog memory limit, at
// least MinScheduleMaxResultBytes, none with the watchdog disabled, and
// never negative whatever the limit.
func TestScheduleMaxResultBytesDefault(t *testing.T) {
	for _, c := range []struct {
		name string
		opts map[string]any
		mod  func(*Options)
		want int
	}{
		{"level 0 (200 MB)", nil, nil, 100 << 20},
		{"level 1 (100 MB)", map[string]any{"watchdog_level": 1}, nil, MinScheduleMaxResultBytes},
		{"memory limit 1000 MB", map[string]any{"watchdog_memory_limit": 1000}, nil, 500 << 20},
		{"flag memory limit 16 MB", nil, func(o *Options) { o.WatchdogMemoryLimit = 16 }, MinScheduleMaxResultBytes},
		{"watchdog disabled", nil, func(o *Options) { o.WatchdogLevel = -1 }, 0},
		{"disable_watchdog", map[string]any{"disable_watchdog": true}, nil, 0},
		{"explicit", map[string]any{"schedule_max_result_bytes": 12345}, nil, 12345},
		{"huge memory limit", map[string]any{"watchdog_memory_limit": float64(int64(1) << 44)}, nil, int(min(int64(maxWatchdogMemoryMB)<<20/2, math.MaxInt))},
	} {
		cfg := map[string]any{"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1", "interval": 60}}}
		if c.opts != nil {
			cfg["options"] = c.opts
		}
		a := configuredAgent(t, t.TempDir(), cfg, c.mod)
		if got := a.scheduleMaxResultBytes(); got != c.want {
			t.Errorf("%s: bound %d, want %d", c.name, got, c.want)
		}
	}
}

// TestOversizedLinesOneStatusLine: a run whose rows are all over
// logger_tls_max_linesize drops them all with one status line (every
// status line is synced) giving their number and the largest size.
func TestOversizedLinesOneStatusLine(t *testing.T) {
	const rows = 3000
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"wide": {"query": wideRows(rows, 300), "interval": 60},
	}, func(o *Options) { o.LoggerTLSMaxLinesize = 200 })
	before := a.status.Stats()
	a.sched.runQuery(context.Background(), a.sched.byName(t, "wide"))
	after := a.status.Stats()
	if n := a.results.Len(); n != 0 {
		t.Fatalf("%d oversized lines spooled", n)
	}
	if n := a.oversizedLines.Load(); n != rows {
		t.Errorf("oversized counter %d, want %d", n, rows)
	}
	if n := after.Appended - before.Appended; n != 1 {
		t.Fatalf("%d status lines for one run's oversized rows, want 1", n)
	}
	msg := statusMessages(t, a.status)
	if !strings.Contains(msg, "over logger_tls_max_linesize dropped") || !strings.Contains(msg, "lines=3000") ||
		!strings.Contains(msg, "largest_bytes=") || !strings.Contains(msg, "name=wide") {
		t.Errorf("status line: %s", msg)
	}
}
