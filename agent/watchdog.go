package agent

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osquery's watchdog defaults (--watchdog_level=0): 200 MB of memory and
// 10% of CPU; a query that trips it is denylisted for a day.
const (
	DefaultWatchdogMemoryMB  = 200
	DefaultWatchdogCPUPct    = 10
	watchdogDenylistDuration = 24 * time.Hour
	watchdogCheckInterval    = 3 * time.Second // osquery's check_interval
)

// watchdog checks each scheduled query's cost. osquery runs queries in a
// worker process it kills when it goes over its limits, then denylists the
// query that was running; the agent runs queries in-process, so it measures
// each run instead: a run whose CPU time exceeds the utilization limit over
// its wall time (at least one check interval), or after which the agent's
// resident memory exceeds the memory limit, denylists the query.
type watchdog struct {
	a        *Agent
	memBytes int64
	cpuPct   int
	cores    int
}

func newWatchdog(a *Agent, memMB, cpuPct int) *watchdog {
	if memMB <= 0 {
		memMB = DefaultWatchdogMemoryMB
	}
	if cpuPct <= 0 {
		cpuPct = DefaultWatchdogCPUPct
	}
	return &watchdog{a: a, memBytes: int64(memMB) << 20, cpuPct: cpuPct, cores: runtime.NumCPU()}
}

// check denylists sq if its last run went over a limit. Queries with
// "denylist": false are exempt, as in osquery.
func (w *watchdog) check(sq *schedQuery, ru0, ru1 syscall.Rusage, wall time.Duration) {
	if !sq.q.Denylist {
		return
	}
	cpu := time.Duration(tvMs(ru1.Utime)+tvMs(ru1.Stime)-tvMs(ru0.Utime)-tvMs(ru0.Stime)) * time.Millisecond
	window := max(wall, watchdogCheckInterval)
	limit := time.Duration(int64(window) * int64(w.cores) * int64(w.cpuPct) / 100)
	reason := ""
	if cpu > limit {
		reason = "cpu"
	} else if rss := residentBytes(); rss > w.memBytes {
		reason = "memory"
	}
	if reason == "" {
		return
	}
	until := w.a.opts.Now().Add(watchdogDenylistDuration)
	w.a.sched.mu.Lock()
	sq.deniedUntil = until
	w.a.sched.mu.Unlock()
	w.a.log.Warn("watchdog: scheduled query went over its limit and is denylisted for a day",
		"name", sq.q.Name, "limit", reason, "cpu", cpu, "cpu_limit", limit,
		"memory_limit_mb", w.memBytes>>20, "until", until.UTC().Format(time.RFC3339))
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
