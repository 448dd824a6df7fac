package agent

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// osquery's watchdog limits (cli-flags.md, --watchdog_level): level 0
// allows 200 MB and 10% CPU sustained for 12 s, level 1 ("restrictive")
// 100 MB and 5% for 6 s, -1 disables it. A query that trips it is
// denylisted for a day.
const (
	DefaultWatchdogMemoryMB  = 200
	DefaultWatchdogCPUPct    = 10
	DefaultWatchdogLatency   = 12 * time.Second
	watchdogDenylistDuration = 24 * time.Hour
	watchdogCheckInterval    = 3 * time.Second // osquery's check_interval
	// maxWatchdogMemoryMB clamps watchdog_memory_limit (1 PiB): MB << 20
	// must not overflow an int64.
	maxWatchdogMemoryMB = 1 << 30
)

// wdLimits are the limits in force; they are read at every check so that
// the config's watchdog_* options apply without a restart.
type wdLimits struct {
	enabled  bool
	memBytes int64
	cpuPct   int
	latency  time.Duration
	// enforceEvents denylists queries that read only event tables
	// (osquery's events_enforce_denylist, default false).
	enforceEvents bool
}

// watchdogLimits combines --watchdog_level, the Options overrides and the
// config's options of the same names (the config wins, as osquery's
// runtime flags).
func (a *Agent) watchdogLimits() wdLimits {
	c := a.currentConfig()
	level := a.opts.WatchdogLevel
	if n, ok := c.intOption("watchdog_level"); ok {
		level = int(n)
	}
	if level < 0 || c.watchdogDisabled() {
		return wdLimits{}
	}
	l := wdLimits{enabled: true, memBytes: DefaultWatchdogMemoryMB << 20, cpuPct: DefaultWatchdogCPUPct, latency: DefaultWatchdogLatency}
	if level >= 1 {
		l.memBytes, l.cpuPct, l.latency = 100<<20, 5, 6*time.Second
	}
	pick := func(opt string, flag int) int64 {
		if n, ok := c.intOption(opt); ok && n > 0 {
			return n
		}
		return int64(flag)
	}
	if mb := pick("watchdog_memory_limit", a.opts.WatchdogMemoryLimit); mb > 0 {
		l.memBytes = min(mb, maxWatchdogMemoryMB) << 20
	}
	if pct := pick("watchdog_utilization_limit", a.opts.WatchdogUtilizationLimit); pct > 0 {
		l.cpuPct = int(pct)
	}
	if s := pick("watchdog_latency_limit", a.opts.WatchdogLatencyLimit); s > 0 {
		l.latency = time.Duration(s) * time.Second
	}
	if n, ok := c.intOption("events_enforce_denylist"); ok {
		l.enforceEvents = n != 0
	}
	return l
}

// watchdog keeps scheduled queries within osquery's limits. osquery runs
// queries in a worker process that its watcher samples every 3 s and
// restarts when it stays over the CPU limit for watchdog_latency_limit
// seconds or goes over the memory limit, denylisting the query that was
// running. The agent runs queries in-process, so it measures what the
// scheduled queries themselves use:
//
//   - CPU: each query runs on a goroutine locked to its own OS thread (the
//     SQLite engine and the table generators run in that goroutine), and
//     the watchdog reads that thread's CPU clock. Event processing,
//     distributed queries and every other goroutine run on other threads
//     and are not charged to the query.
//   - Sustained: every check interval, the CPU the scheduled queries used
//     in it is compared with cores × interval × utilization%; only when it
//     is over for latency/interval consecutive checks is the query that
//     used the most in the last interval stopped (its context is
//     cancelled, as osquery kills the worker) and denylisted.
//   - Memory: the agent's resident set over its size when the watchdog
//     started plus the limit (osquery measures from the same baseline),
//     after a garbage collection, with the query having grown it by at
//     least a quarter of the limit: memory held by something else is
//     reported but charged to no query.
//
// Denylist entries are persisted (denylist.go) and expire after a day.
type watchdog struct {
	a        *Agent
	interval time.Duration
	cores    int
	// rss reads the agent's resident set; threadCPU is called on a query's
	// locked thread and returns a reader of that thread's CPU time. Tests
	// replace both.
	rss       func() int64
	threadCPU func() func() time.Duration
	base      int64

	mu        sync.Mutex
	window    map[*schedQuery]time.Duration // CPU used in the current interval
	cur       *queryRun
	sustained int
	memWarned bool
}

// queryRun is one scheduled query run in progress.
type queryRun struct {
	sq      *schedQuery
	cpu     func() time.Duration
	seen    time.Duration // thread CPU at start or at the last check
	rss0    int64         // resident set at start
	cancel  context.CancelFunc
	tripped string // "cpu" or "memory" once the watchdog stopped it
}

func newWatchdog(a *Agent) *watchdog {
	w := &watchdog{
		a: a, interval: watchdogCheckInterval, cores: runtime.NumCPU(),
		rss: residentBytes, threadCPU: threadCPUReader,
		window: map[*schedQuery]time.Duration{},
	}
	w.base = w.rss()
	return w
}

// cpuLimit is osquery's cpu_limit_ms: cores × check interval × pct/100.
func (w *watchdog) cpuLimit(l wdLimits) time.Duration {
	return time.Duration(int64(w.interval) * int64(w.cores) * int64(l.cpuPct) / 100)
}

// loop runs the periodic checks until ctx is done.
func (w *watchdog) loop(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check()
		}
	}
}

// begin registers a run; it must be called on the run's locked thread.
// cancel stops the run.
func (w *watchdog) begin(sq *schedQuery, cancel context.CancelFunc) *queryRun {
	r := &queryRun{sq: sq, cpu: w.threadCPU(), cancel: cancel, rss0: w.rss()}
	r.seen = r.cpu()
	w.mu.Lock()
	w.cur = r
	w.mu.Unlock()
	return r
}

// end closes a run (on its thread) and returns why the watchdog stopped it
// ("" if it did not). The memory limit is checked here too, while the
// run's result is still held.
func (w *watchdog) end(r *queryRun) string {
	// Read under the lock: a check reading the clock concurrently must not
	// see a later value than this one.
	w.mu.Lock()
	c := r.cpu()
	w.window[r.sq] += c - r.seen
	r.seen = c
	w.cur = nil // from here on, check() cannot stop r (stop)
	tripped := r.tripped
	w.mu.Unlock()
	if tripped != "" {
		return tripped
	}
	l := w.a.watchdogLimits()
	if l.enabled && w.overMemory(l, r) {
		w.mu.Lock()
		claimed := r.tripped == ""
		if claimed {
			r.tripped = "memory"
		}
		tripped = r.tripped
		w.mu.Unlock()
		if claimed {
			w.trip(r.sq, "memory", l, 0)
		}
		return tripped
	}
	return ""
}

// overMemory reports whether the agent is over the memory limit because of
// run r. It collects garbage first, as a restarted osquery worker starts
// from a clean heap; memory the run did not add (by a quarter of the limit)
// is not its fault, and is reported once, without a collection.
func (w *watchdog) overMemory(l wdLimits, r *queryRun) bool {
	limit := w.base + l.memBytes
	rss := w.rss()
	if rss <= limit {
		w.mu.Lock()
		w.memWarned = false
		w.mu.Unlock()
		return false
	}
	if rss-r.rss0 >= l.memBytes/4 {
		debug.FreeOSMemory()
		rss = w.rss()
		return rss > limit && rss-r.rss0 >= l.memBytes/4
	}
	w.mu.Lock()
	warned := w.memWarned
	w.memWarned = true
	w.mu.Unlock()
	if !warned {
		w.a.log.Warn("watchdog: agent memory over the limit, not caused by a scheduled query",
			"rss_mb", rss>>20, "limit_mb", limit>>20, "query", r.sq.q.Name)
	}
	return false
}

// check is one watchdog interval: it charges the CPU used since the last
// check to the queries that used it and applies the sustained rule, then
// the memory limit to a run in progress.
func (w *watchdog) check() {
	l := w.a.watchdogLimits()
	w.mu.Lock()
	cur := w.cur
	if cur != nil && cur.tripped == "" {
		c := cur.cpu()
		w.window[cur.sq] += c - cur.seen
		cur.seen = c
	}
	var total, most time.Duration
	var culprit *schedQuery
	for sq, d := range w.window {
		total += d
		if d > most || culprit == nil {
			most, culprit = d, sq
		}
	}
	clear(w.window)
	if !l.enabled {
		w.sustained = 0
		w.mu.Unlock()
		return
	}
	limit := w.cpuLimit(l)
	if total > limit {
		w.sustained++
	} else {
		w.sustained = 0
	}
	cpuTrip := culprit != nil && time.Duration(w.sustained)*w.interval >= l.latency
	if cpuTrip {
		w.sustained = 0
	}
	w.mu.Unlock()
	if cpuTrip {
		// A culprit that is no longer running is still denylisted for
		// the CPU it used, unless the run was stopped for another reason
		// (and so denylisted already).
		if cur != nil && cur.sq == culprit && !w.stop(cur, "cpu") && w.trippedFor(cur) != "" {
			return
		}
		w.trip(culprit, "cpu", l, most)
		return
	}
	// The run may end while overMemory runs: stop then refuses, and end()
	// has judged the memory itself.
	if cur != nil && w.overMemory(l, cur) && w.stop(cur, "memory") {
		w.trip(cur.sq, "memory", l, 0)
	}
}

// stop cancels a run in progress (osquery kills the worker) and reports
// whether it did: only a run still in progress (not ended, see end) and
// not stopped already can be, so that one run is tripped once.
func (w *watchdog) stop(r *queryRun, reason string) bool {
	w.mu.Lock()
	ok := r.tripped == "" && w.cur == r
	if ok {
		r.tripped = reason
	}
	w.mu.Unlock()
	if ok {
		r.cancel()
	}
	return ok
}

// trippedFor is why the watchdog stopped r ("" if it did not).
func (w *watchdog) trippedFor(r *queryRun) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return r.tripped
}

// trip reports a query that went over a limit and denylists it when it may
// be: "denylist": false and (unless events_enforce_denylist) queries that
// read only event tables are stopped but not denylisted, as in osquery.
func (w *watchdog) trip(sq *schedQuery, reason string, l wdLimits, cpu time.Duration) {
	attrs := []any{"name", sq.q.Name, "limit", reason, "cpu_limit_per_interval", w.cpuLimit(l),
		"interval", w.interval, "latency_limit", l.latency, "memory_limit_mb", l.memBytes >> 20}
	if reason == "cpu" {
		attrs = append(attrs, "cpu_in_last_interval", cpu)
	}
	if !w.a.sched.mayDeny(sq, l) {
		w.a.log.Warn("watchdog: scheduled query went over its limit; not denylisted (denylist false or event query)", attrs...)
		return
	}
	until := w.a.opts.Now().Add(watchdogDenylistDuration)
	w.a.sched.deny(sq, until, reason)
	w.a.log.Warn("watchdog: scheduled query went over its limit and is denylisted for a day",
		append(attrs, "until", until.UTC().Format(time.RFC3339))...)
}

// residentBytes is the agent's resident set size.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
