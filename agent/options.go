package agent

import (
	"math"
	"sort"
	"time"
)

// Config options osquery lets a config change at runtime, and what the
// agent does with them. Read where they are used (so a new config applies
// at once): config_refresh, distributed_interval,
// distributed_max_result_bytes, logger_tls_*, schedule_epoch,
// watchdog_level, watchdog_memory_limit, watchdog_utilization_limit,
// watchdog_latency_limit, events_enforce_denylist and disable_watchdog.
// Applied when a config is installed (applyOptions): buffered_log_max,
// events_max and events_expiry.
// The rest of the options named here are reported as ignored, so that an
// operator does not believe they took effect.
var unsupportedOptions = map[string]string{
	"watchdog_delay":                 "the watchdog enforces its limits from the start",
	"watchdog_forced_shutdown_delay": "queries are stopped by cancelling them, not by killing a worker",
	"enable_watchdog_debug":          "not supported",
	"enable_extensions_watchdog":     "extensions are not supported",
}

// applyOptions applies the options of a newly installed config that are
// not read at their point of use, and warns about each one it cannot
// honour, naming it.
func (a *Agent) applyOptions(c *agentConfig) {
	if n, ok := c.intOption("buffered_log_max"); ok {
		if max, ok := bufferedLogMax(n); ok {
			a.results.SetMaxRecords(max)
			a.status.SetMaxRecords(max)
		} else {
			a.log.Warn("config option buffered_log_max is ignored: it must be 0 (unlimited) or positive", "option", "buffered_log_max", "value", n)
		}
	}
	a.applyEventLimits(c)
	var ignored []string
	for name := range c.Options {
		if _, ok := unsupportedOptions[name]; ok {
			ignored = append(ignored, name)
		}
	}
	sort.Strings(ignored)
	for _, name := range ignored {
		a.log.Warn("config option "+name+" is ignored: "+unsupportedOptions[name], "option", name)
	}
}

// bufferedLogMax turns osquery's buffered_log_max into a spool bound:
// osquery's 0 means unlimited (the spool's negative), a positive value is
// kept, and a negative one is invalid (osquery's flag is unsigned).
func bufferedLogMax(n int64) (int, bool) {
	switch {
	case n == 0:
		return -1, true
	case n < 0:
		return 0, false
	}
	return int(min(n, math.MaxInt32)), true
}

// watchdogDisabled reports the config's disable_watchdog option.
func (c *agentConfig) watchdogDisabled() bool {
	n, ok := c.intOption("disable_watchdog")
	return ok && n != 0
}

// applyEventLimits applies the config's events_max and events_expiry (in
// seconds) to the event buffer, as osquery's config options override its
// flags. A value that is absent or not positive leaves the start value
// (--events_max, --events_expiry or the embedder's buffer) in force, so
// a config that drops an option restores it.
func (a *Agent) applyEventLimits(c *agentConfig) {
	evMax, hasMax := c.intOption("events_max")
	evExp, hasExp := c.intOption("events_expiry")
	newMax, newExp := a.evBaseMax, a.evBaseExp
	if hasMax && evMax > 0 {
		newMax = int(min(evMax, math.MaxInt32))
	}
	if hasExp && evExp > 0 {
		newExp = time.Duration(min(evExp, math.MaxInt64/int64(time.Second))) * time.Second
	}
	curMax, curExp := a.events.Limits()
	if newMax == curMax && newExp == curExp {
		return
	}
	a.events.SetLimits(newMax, newExp)
	a.log.Info("event buffer limits changed", "events_max", newMax, "events_expiry", int64(newExp/time.Second),
		"previous_events_max", curMax, "previous_events_expiry", int64(curExp/time.Second))
}
