package agent

import (
	"sort"
	"time"

	"github.com/vigilhq/vigil/agent/event"
)

// Config options osquery lets a config change at runtime, and what the
// agent does with them. Read where they are used (so a new config applies
// at once): config_refresh, distributed_interval,
// distributed_max_result_bytes, logger_tls_*, schedule_epoch,
// watchdog_level, watchdog_memory_limit, watchdog_utilization_limit,
// watchdog_latency_limit, events_enforce_denylist and disable_watchdog.
// Applied when a config is installed (applyOptions): buffered_log_max, and
// events_max / events_expiry when the event buffer can change its limits.
// The rest of the options named here are reported as ignored, so that an
// operator does not believe they took effect.
var unsupportedOptions = map[string]string{
	"watchdog_delay":                 "the watchdog enforces its limits from the start",
	"watchdog_forced_shutdown_delay": "queries are stopped by cancelling them, not by killing a worker",
	"enable_watchdog_debug":          "not supported",
	"enable_extensions_watchdog":     "extensions are not supported",
}

// eventLimiter is implemented by event buffers whose limits can change at
// runtime.
type eventLimiter interface {
	SetLimits(max int, expiry time.Duration)
}

// applyOptions applies the options of a newly installed config that are
// not read at their point of use, and warns about each one it cannot
// honour, naming it.
func (a *Agent) applyOptions(c *agentConfig) {
	if n, ok := c.intOption("buffered_log_max"); ok {
		max := int(n)
		if max <= 0 {
			max = a.opts.BufferedLogMax // osquery: 0 means its default
		}
		a.results.SetMaxRecords(max)
		a.status.SetMaxRecords(max)
	}
	evMax, hasMax := c.intOption("events_max")
	evExp, hasExp := c.intOption("events_expiry")
	if hasMax || hasExp {
		curMax, curExp := a.opts.EventsMax, a.opts.EventsExpiry
		if curMax <= 0 {
			curMax = event.DefaultMax
		}
		if curExp == 0 {
			curExp = event.DefaultExpiry
		}
		newMax, newExp := curMax, curExp
		if hasMax && evMax > 0 {
			newMax = int(evMax)
		}
		if hasExp && evExp > 0 {
			newExp = time.Duration(evExp) * time.Second
		}
		if l, ok := any(a.events).(eventLimiter); ok {
			l.SetLimits(newMax, newExp)
		} else {
			if newMax != curMax {
				a.log.Warn("config option events_max is ignored: the event buffer's limit is set at start (--events_max)",
					"option", "events_max", "value", newMax, "in_force", curMax)
			}
			if newExp != curExp {
				a.log.Warn("config option events_expiry is ignored: the event buffer's expiry is set at start (--events_expiry)",
					"option", "events_expiry", "value", int64(newExp/time.Second), "in_force", int64(curExp/time.Second))
			}
		}
	}
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

// watchdogDisabled reports the config's disable_watchdog option.
func (c *agentConfig) watchdogDisabled() bool {
	n, ok := c.intOption("disable_watchdog")
	return ok && n != 0
}
