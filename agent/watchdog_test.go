package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/spool"
)

const heavySQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300000) SELECT count(*) AS n FROM c"

// scheduledAgent returns an agent (not running) with the given schedule
// loaded from a config file in dir.
func scheduledAgent(t *testing.T, dir string, queries map[string]map[string]any, mod func(*Options)) *Agent {
	t.Helper()
	return configuredAgent(t, dir, map[string]any{"schedule": queries}, mod)
}

// configuredAgent returns an agent (not running) with the config document
// config loaded from a file in dir.
func configuredAgent(t *testing.T, dir string, config map[string]any, mod func(*Options)) *Agent {
	t.Helper()
	cfg := filepath.Join(dir, "c.json")
	b, err := json.Marshal(config)
	must(t, err)
	must(t, os.WriteFile(cfg, b, 0o600))
	opts := Options{DataDir: filepath.Join(dir, "data"), ConfigPath: cfg, Root: fixtureRoot(t), Logger: testLogger(t)}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	must(t, err)
	t.Cleanup(func() { a.Close() })
	must(t, a.loadConfig(context.Background()))
	return a
}

func (s *scheduler) byName(t *testing.T, name string) *schedQuery {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sq := range s.queries {
		if sq.q.Name == name {
			return sq
		}
	}
	t.Fatalf("no scheduled query %q", name)
	return nil
}

func denylisted(a *Agent, name string) bool {
	for _, st := range a.sched.info() {
		if st.Name == name {
			return st.Denylisted == 1
		}
	}
	return false
}

// statusMessages returns the status lines spooled so far.
func statusMessages(t *testing.T, sp *spool.Spool) string {
	t.Helper()
	recs, err := sp.Peek(10000, 1<<30)
	must(t, err)
	var b strings.Builder
	for _, r := range recs {
		b.Write(r.Data)
		b.WriteByte('\n')
	}
	return b.String()
}

func (w *watchdog) windowCPU(sq *schedQuery) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.window[sq]
}

// fakeCPU is an injected thread CPU clock.
type fakeCPU struct{ ns atomic.Int64 }

func (f *fakeCPU) add(d time.Duration) { f.ns.Add(int64(d)) }
func (f *fakeCPU) reader() func() time.Duration {
	return func() time.Duration { return time.Duration(f.ns.Load()) }
}

// TestWatchdogSustainedRule drives the checks by hand with an injected
// CPU clock: 2 cores, 3 s checks, 10% → 600 ms per check. A run over the
// limit for one check is tolerated; over it for latency (12 s = 4 checks)
// the running query is cancelled and denylisted; a check under the limit
// resets the count.
func TestWatchdogSustainedRule(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"heavy": {"query": "SELECT 1 AS one", "interval": 60},
	}, nil)
	w := a.sched.wd
	w.cores, w.interval = 2, 3*time.Second
	clock := &fakeCPU{}
	w.threadCPU = clock.reader
	sq := a.sched.byName(t, "heavy")
	var cancelled atomic.Bool
	run := w.begin(sq, func() { cancelled.Store(true) })

	over := func(n int) {
		for i := 0; i < n; i++ {
			clock.add(700 * time.Millisecond)
			w.check()
		}
	}
	over(3)
	clock.add(100 * time.Millisecond) // under: resets
	w.check()
	over(3)
	if cancelled.Load() || denylisted(a, "heavy") {
		t.Fatal("denylisted without 12 s of sustained CPU")
	}
	over(1)
	if !cancelled.Load() || !denylisted(a, "heavy") {
		t.Fatalf("not stopped after 12 s over the limit: cancelled %v", cancelled.Load())
	}
	if got := w.end(run); got != "cpu" {
		t.Errorf("end = %q, want cpu", got)
	}
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "denylisted for a day") || !strings.Contains(msg, "name=heavy") {
		t.Errorf("no watchdog status line: %s", msg)
	}
}

// TestWatchdogExemptions: "denylist": false and event-only queries go over
// the limit, are reported, and stay scheduled.
func TestWatchdogExemptions(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"keep":   {"query": "SELECT 1 AS one", "interval": 60, "denylist": false},
		"events": {"query": "SELECT * FROM process_events", "interval": 60},
	}, func(o *Options) { o.WatchdogLatencyLimit = 3 })
	w := a.sched.wd
	w.cores, w.interval = 2, 3*time.Second
	clock := &fakeCPU{}
	w.threadCPU = clock.reader
	for _, name := range []string{"keep", "events"} {
		run := w.begin(a.sched.byName(t, name), func() {})
		clock.add(time.Second)
		w.check()
		w.end(run)
		if denylisted(a, name) {
			t.Errorf("%s denylisted", name)
		}
	}
	if msg := statusMessages(t, a.status); strings.Count(msg, "not denylisted") != 2 {
		t.Errorf("want two 'not denylisted' reports: %s", msg)
	}
}

// burn spins on another goroutine until the process used at least cpu
// more CPU time.
func burn(cpu time.Duration) {
	start := processCPU()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		x := 0
		for !stop.Load() {
			for i := 0; i < 1e5; i++ {
				x += i
			}
		}
		_ = x
	}()
	for processCPU()-start < cpu {
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	<-done
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWatchdogInnocentQueryNotCharged: a light scheduled query waits
// (parked, using no CPU) while another goroutine runs a CPU-heavy query
// under the same consumer name, which holds the consumer's lock, in each of
// three check intervals. The process as a whole (what RUSAGE_SELF measures)
// uses many times the limit during every light run; the light query's own
// thread does not, and it is not denylisted.
func TestWatchdogInnocentQueryNotCharged(t *testing.T) {
	const burnSQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1500000) SELECT count(*) AS n FROM c"
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		// Reads an event table (so it runs with QueryAs) and a plain one (so
		// that it may be denylisted).
		"light": {"query": "SELECT e.pid FROM process_events e JOIN users u ON u.uid = e.pid", "interval": 1},
	}, func(o *Options) { o.WatchdogUtilizationLimit = 1; o.WatchdogLatencyLimit = 3 })
	w := a.sched.wd
	w.interval = 3 * time.Second
	limit := w.cpuLimit(a.watchdogLimits())
	sq := a.sched.byName(t, "light")
	if !a.sched.mayDeny(sq, a.watchdogLimits()) {
		t.Fatal("light query exempt from the denylist: the test proves nothing")
	}
	w.check() // start a clean window
	for i := 0; i < 3; i++ {
		burning := make(chan error, 1)
		c0 := processCPU()
		go func() {
			_, err := a.engine.QueryAs(context.Background(), "light", burnSQL)
			burning <- err
		}()
		for processCPU()-c0 < 20*time.Millisecond {
			time.Sleep(time.Millisecond) // the burner is inside its query, holding the lock
		}
		p0 := processCPU()
		a.sched.runQuery(context.Background(), sq)
		used := processCPU() - p0
		must(t, <-burning)
		if used <= 3*limit {
			t.Fatalf("process used %v during the light run, not over 3 × the limit %v: the test proves nothing", used, limit)
		}
		w.check()
	}
	if denylisted(a, "light") {
		t.Fatal("light query denylisted for CPU another goroutine used")
	}
	if n := a.sched.byName(t, "light").stats.Executions; n != 3 {
		t.Fatalf("light ran %d times, want 3", n)
	}
}

// TestWatchdogDenylistsHeavyQuery: a CPU-heavy query, measured on its own
// thread, trips a 1% limit sustained for one check, is denylisted,
// reported and persisted; the light query next to it is not.
func TestWatchdogDenylistsHeavyQuery(t *testing.T) {
	dir := t.TempDir()
	a := scheduledAgent(t, dir, map[string]map[string]any{
		"heavy": {"query": heavySQL, "interval": 1},
		"light": {"query": "SELECT 1 AS one", "interval": 1},
	}, func(o *Options) { o.WatchdogUtilizationLimit = 1; o.WatchdogLatencyLimit = 3 })
	w := a.sched.wd
	w.interval = 3 * time.Second
	limit := w.cpuLimit(a.watchdogLimits())
	heavy, light := a.sched.byName(t, "heavy"), a.sched.byName(t, "light")
	w.check()
	for i := 0; i < 20 && !denylisted(a, "heavy"); i++ {
		// Enough heavy runs to go over the limit in this interval.
		for j := 0; j < 50 && w.windowCPU(heavy) <= limit; j++ {
			a.sched.runQuery(context.Background(), heavy)
		}
		a.sched.runQuery(context.Background(), light)
		w.check()
	}
	if !denylisted(a, "heavy") || denylisted(a, "light") {
		t.Fatalf("heavy denylisted %v, light denylisted %v", denylisted(a, "heavy"), denylisted(a, "light"))
	}
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "denylisted for a day") || !strings.Contains(msg, "name=heavy") || !strings.Contains(msg, "limit=cpu") {
		t.Errorf("no watchdog status line: %s", msg)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "denylist.json"))
	must(t, err)
	if !strings.Contains(string(b), `"heavy"`) || strings.Contains(string(b), `"light"`) {
		t.Errorf("persisted denylist: %s", b)
	}
}

// TestDenylistSurvivesRestart: a denylisted query stays off the schedule
// after a restart, until its day is over or its SQL changes.
func TestDenylistSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	q := map[string]map[string]any{"heavy": {"query": heavySQL, "interval": 1}}
	a := scheduledAgent(t, dir, q, func(o *Options) { o.Now = clock })
	a.sched.wd.trip(a.sched.byName(t, "heavy"), "cpu", a.watchdogLimits(), time.Second)
	if !denylisted(a, "heavy") {
		t.Fatal("not denylisted")
	}
	a.Close()

	now = now.Add(23 * time.Hour)
	b := scheduledAgent(t, dir, q, func(o *Options) { o.Now = clock })
	if !denylisted(b, "heavy") {
		t.Fatal("denylist lost across a restart")
	}
	b.sched.runDue(context.Background())
	if n := b.sched.byName(t, "heavy").stats.Executions; n != 0 {
		t.Fatalf("denylisted query ran %d times after the restart", n)
	}
	b.Close()

	now = now.Add(2 * time.Hour)
	c := scheduledAgent(t, dir, q, func(o *Options) { o.Now = clock })
	if denylisted(c, "heavy") {
		t.Fatal("still denylisted after a day")
	}
	c.Close()

	now = now.Add(-2 * time.Hour)
	q["heavy"]["query"] = "SELECT 2 AS two"
	d := scheduledAgent(t, dir, q, func(o *Options) { o.Now = clock })
	if denylisted(d, "heavy") {
		t.Fatal("still denylisted after its SQL changed")
	}
}

// TestWatchdogMemoryLimit: with an injected resident set (so that the
// test does not rest on what the garbage collector gives back), a query
// during which the agent grows 48 MB over a 16 MB limit is denylisted for
// memory; a light query run afterwards is not charged for it, nor for
// memory held elsewhere in the agent while it runs, which is reported.
func TestWatchdogMemoryLimit(t *testing.T) {
	const alloc = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 12000) SELECT x, printf('%.*c', 4000, 'x') AS pad FROM c"
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"alloc": {"query": alloc, "interval": 1, "snapshot": true},
		"light": {"query": "SELECT 1 AS one", "interval": 1},
	}, func(o *Options) {
		o.WatchdogMemoryLimit = 16
		o.LoggerTLSMaxLinesize = 1 << 30
	})
	w := a.sched.wd
	const base = 100 << 20
	var rss atomic.Int64
	w.rss, w.base = rss.Load, base
	// growing: the resident set is base when a run begins and base+48 MB
	// when it is read again (the run's end).
	growing := func() func() int64 {
		var calls atomic.Int64
		return func() int64 {
			if calls.Add(1) == 1 {
				return base
			}
			return base + 48<<20
		}
	}

	rss.Store(base)
	a.sched.runQuery(context.Background(), a.sched.byName(t, "light"))
	w.rss = growing()
	real0 := residentBytes()
	a.sched.runQuery(context.Background(), a.sched.byName(t, "alloc"))
	t.Logf("real resident set across the alloc run: %d MB → %d MB (not asserted)", real0>>20, residentBytes()>>20)
	w.rss = rss.Load // back to base, as after the collection
	a.sched.runQuery(context.Background(), a.sched.byName(t, "light"))
	if !denylisted(a, "alloc") || denylisted(a, "light") {
		t.Fatalf("alloc denylisted %v, light denylisted %v", denylisted(a, "alloc"), denylisted(a, "light"))
	}
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "name=alloc limit=memory") {
		t.Errorf("no memory watchdog status line: %s", msg)
	}
	// Memory held elsewhere in the agent while the light query runs (over
	// the limit at its start and its end) is not the light query's.
	rss.Store(base + 48<<20)
	a.sched.runQuery(context.Background(), a.sched.byName(t, "light"))
	if denylisted(a, "light") {
		t.Error("light query denylisted for memory it did not allocate")
	}
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "not caused by a scheduled query") {
		t.Errorf("memory over the limit not reported: %s", msg)
	}
}

// TestWatchdogDisabled: level -1 (or the config's watchdog_level -1) never
// denylists.
func TestWatchdogDisabled(t *testing.T) {
	q := map[string]map[string]any{"heavy": {"query": heavySQL, "interval": 1}}
	for _, cfg := range []map[string]any{
		{"schedule": q},
		{"schedule": q, "options": map[string]any{"watchdog_level": -1}},
		{"schedule": q, "options": map[string]any{"disable_watchdog": true}},
	} {
		level := -1
		if cfg["options"] != nil {
			level = 0 // the config turns it off
		}
		a := configuredAgent(t, t.TempDir(), cfg, func(o *Options) {
			o.WatchdogLevel = level
			o.WatchdogUtilizationLimit = 1
			o.WatchdogLatencyLimit = 3
		})
		w := a.sched.wd
		clock := &fakeCPU{}
		w.threadCPU = clock.reader
		run := w.begin(a.sched.byName(t, "heavy"), func() {})
		for i := 0; i < 10; i++ {
			clock.add(10 * time.Second)
			w.check()
		}
		w.end(run)
		if denylisted(a, "heavy") {
			t.Fatalf("denylisted with the watchdog disabled (config %v)", cfg)
		}
	}
}

func atoi64(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}

// TestWatchdogStopsRunningQuery: a query that would run for hours is
// cancelled in mid-run once it has stayed over the limit for the latency
// limit (checks driven by the test, 100 ms intervals), denylisted, and
// logs nothing.
func TestWatchdogStopsRunningQuery(t *testing.T) {
	const endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000000000000) SELECT count(*) AS n FROM c"
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"endless": {"query": endless, "interval": 60},
	}, func(o *Options) { o.WatchdogUtilizationLimit = 1; o.WatchdogLatencyLimit = 1 })
	w := a.sched.wd
	w.interval = 100 * time.Millisecond // latency 1 s = 10 checks over the limit
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); a.sched.runQuery(ctx, a.sched.byName(t, "endless")) }()
	stopped := false
	for i := 0; i < 3000 && !stopped; i++ {
		select {
		case <-done:
			stopped = true
		case <-time.After(20 * time.Millisecond):
			w.check()
		}
	}
	if !stopped {
		cancel()
		<-done
		t.Fatal("the watchdog never stopped the query")
	}
	if !denylisted(a, "endless") {
		t.Error("stopped but not denylisted")
	}
	if n := a.results.Len(); n != 0 {
		t.Errorf("%d result lines from a stopped query", n)
	}
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "name=endless limit=cpu") || strings.Contains(msg, "scheduled query failed") {
		t.Errorf("status lines: %s", msg)
	}
}

// TestWatchdogMemoryLimitClamped: a huge watchdog_memory_limit (2^44 MB,
// from the config or the flag) does not overflow into a negative limit
// that would denylist every query for memory.
func TestWatchdogMemoryLimitClamped(t *testing.T) {
	for _, c := range []struct {
		cfg map[string]any
		mod func(*Options)
	}{
		{map[string]any{"watchdog_memory_limit": float64(int64(1) << 44)}, nil},
		{nil, func(o *Options) { o.WatchdogMemoryLimit = 1 << 44 }},
	} {
		cfg := map[string]any{"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}}}
		if c.cfg != nil {
			cfg["options"] = c.cfg
		}
		a := configuredAgent(t, t.TempDir(), cfg, c.mod)
		l := a.watchdogLimits()
		if l.memBytes != maxWatchdogMemoryMB<<20 {
			t.Errorf("memory limit %d bytes, want the clamp %d", l.memBytes, int64(maxWatchdogMemoryMB)<<20)
		}
		w := a.sched.wd
		var rss atomic.Int64
		rss.Store(1 << 30)
		w.rss, w.base = rss.Load, 0
		run := w.begin(a.sched.byName(t, "q"), func() {})
		rss.Store(64 << 30) // grew by 63 GB: still far under 1 PiB
		if got := w.end(run); got != "" || denylisted(a, "q") {
			t.Errorf("query tripped (%q) under a 1 PiB memory limit", got)
		}
	}
}

// TestWatchdogTripsOnce: the run ends (and end() denylists it for memory)
// while check() is judging its memory: check() must not trip it a second
// time (a second warning and denylist write) once it has ended.
func TestWatchdogTripsOnce(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"alloc": {"query": "SELECT 1 AS one", "interval": 60},
	}, func(o *Options) { o.WatchdogMemoryLimit = 16 })
	w := a.sched.wd
	const base = 100 << 20
	var rss atomic.Int64
	rss.Store(base)
	w.base = base
	w.rss = rss.Load
	clock := &fakeCPU{}
	w.threadCPU = clock.reader
	var cancels atomic.Int32
	run := w.begin(a.sched.byName(t, "alloc"), func() { cancels.Add(1) })
	rss.Store(base + 48<<20)

	// check() reads the resident set in overMemory, after it took the run
	// in progress: the run ends right then.
	var ended atomic.Bool
	var endResult string
	w.rss = func() int64 {
		if ended.CompareAndSwap(false, true) {
			endResult = w.end(run)
		}
		return rss.Load()
	}
	w.check()
	if endResult != "memory" {
		t.Fatalf("end = %q, want memory", endResult)
	}
	msg := statusMessages(t, a.status)
	if n := strings.Count(msg, "name=alloc limit=memory"); n != 1 {
		t.Errorf("run tripped %d times, want once: %s", n, msg)
	}
	if n := cancels.Load(); n != 0 {
		t.Errorf("a run that had ended was cancelled %d times", n)
	}
	if !denylisted(a, "alloc") {
		t.Error("not denylisted")
	}

	// The other order: check() stops the run first, then end() reports the
	// same trip and does not trip it again.
	w.rss = rss.Load
	rss.Store(base)
	run = w.begin(a.sched.byName(t, "alloc"), func() { cancels.Add(1) })
	rss.Store(base + 48<<20)
	w.check()
	if got := w.end(run); got != "memory" {
		t.Errorf("end after check = %q, want memory", got)
	}
	msg = statusMessages(t, a.status)
	if n := strings.Count(msg, "name=alloc limit=memory"); n != 2 {
		t.Errorf("second run tripped %d times, want once: %s", n-1, msg)
	}
	if n := cancels.Load(); n != 1 {
		t.Errorf("running query cancelled %d times, want 1", n)
	}
}
