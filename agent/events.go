package agent

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/agent/event"
	"github.com/vigilhq/vigil/agent/table"
	"github.com/vigilhq/vigil/osquery"
)

// lossCounters count what the loggers dropped (vigil_event_drops rows
// result_log and distributed).
type lossCounters struct {
	oversizedLines atomic.Uint64 // result lines over logger_tls_max_linesize
	distAnswered   atomic.Uint64 // distributed queries answered
	distTooLarge   atomic.Uint64 // distributed results over the bound
	schedTooLarge  atomic.Uint64 // scheduled query results over the bound
	// shutdownLost counts event rows buffered but not delivered at a stop:
	// a previous unclean stop (from its checkpoint) or this run's clean
	// stop (eventflush.go).
	shutdownLost atomic.Uint64
}

// DefaultEventStatsInterval is how often event counters go to the status
// log.
const DefaultEventStatsInterval = 5 * time.Minute

// eventStatsLoop reports the event sources' and buffer's counters as a
// status line (like osquery's osquery_events table, but pushed): INFO
// normally, WARNING when any loss counter grew since the last report.
func (a *Agent) eventStatsLoop(ctx context.Context) {
	every := a.opts.EventStatsInterval
	if every <= 0 {
		every = DefaultEventStatsInterval
	}
	var prev eventReport
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var sev int
		var msg string
		sev, msg, prev = a.eventStatsReport(prev)
		a.statusLine(sev, msg)
	}
}

// eventReport is what the last event counters status line reported.
type eventReport struct {
	loss       uint64 // rows that never reached a consumer
	incomplete uint64 // rows delivered with part of their data missing
}

// eventStatsReport builds one event counters status line: WARNING (1) when
// rows were lost since prev, else INFO (0). Incomplete rows (an argv cut
// because audit records were missing) reached the tables, so they do not
// raise the severity, but their growth is named at the front of the line.
func (a *Agent) eventStatsReport(prev eventReport) (int, string, eventReport) {
	rows := a.eventStatRows()
	msg, loss := countersLine(rows)
	cur := eventReport{loss: loss}
	for _, s := range rows {
		cur.incomplete += s.Incomplete
	}
	sev := 0
	if cur.incomplete > prev.incomplete {
		msg = fmt.Sprintf("event rows delivered incomplete since last report: %d; %s", cur.incomplete-prev.incomplete, msg)
	}
	if cur.loss > prev.loss {
		sev = 1
		msg = fmt.Sprintf("event rows lost since last report: %d; %s", cur.loss-prev.loss, msg)
	}
	return sev, msg, cur
}

// eventCounters renders every counter of eventStatRows on one line and
// sums the losses (rows that never reached a consumer).
func (a *Agent) eventCounters() (string, uint64) { return countersLine(a.eventStatRows()) }

// countersLine renders rows on one line and sums their losses.
func countersLine(rows []table.EventStat) (string, uint64) {
	var parts []string
	var loss uint64
	for _, s := range rows {
		loss += s.Lost()
		switch {
		case s.Type == "publisher" && !s.Active:
			parts = append(parts, fmt.Sprintf("%s inactive (%s)", s.Name, s.Error))
		case s.Type == "publisher":
			parts = append(parts, fmt.Sprintf("%s events=%d kernel_lost=%d socket_overflows=%d queue_dropped=%d sequence_gaps=%d incomplete=%d parse_errors=%d proc_gone=%d",
				s.Name, s.Events, s.KernelLost, s.SocketOverflows, s.QueueDropped, s.SequenceGaps, s.Incomplete, s.ParseErrors, s.ProcGone))
		case s.Type == "subscriber":
			parts = append(parts, fmt.Sprintf("%s added=%d buffered=%d dropped=%d expired=%d", s.Name, s.Events, s.Buffered, s.BufferDropped, s.BufferExpired))
		default:
			parts = append(parts, fmt.Sprintf("%s lines=%d dropped=%d too_large=%d", s.Name, s.Events, s.BufferDropped, s.TooLarge))
		}
	}
	return "event counters: " + strings.Join(parts, "; "), loss
}

// eventTables are the subscribers osquery_events lists even when no source
// feeds them.
var eventTables = []string{"file_events", "process_events", "socket_events", "user_events"}

// eventStatRows describes the event publishers (sources), subscribers
// (event tables and their buffer) and loggers for osquery_events,
// vigil_event_drops and the status log.
func (a *Agent) eventStatRows() []table.EventStat {
	var out []table.EventStat
	feeders := map[string][]string{} // table -> active sources
	sources := a.EventStats
	if a.sourceStats != nil {
		sources = a.sourceStats
	}
	for _, s := range sources() {
		out = append(out, table.EventStat{
			Name: s.Source, Publisher: s.Source, Type: "publisher", Subscriptions: len(s.Tables),
			Events: s.Events, Refreshes: s.Refreshes, Active: s.Active, Error: s.Error,
			KernelLost: s.KernelLost, SocketOverflows: s.SocketOverflows, QueueDropped: s.QueueDropped,
			SequenceGaps: s.SequenceGaps, Incomplete: s.Incomplete, ParseErrors: s.ParseErrors, ProcGone: s.ProcGone,
		})
		if s.Active {
			for _, t := range s.Tables {
				feeders[t] = append(feeders[t], s.Source)
			}
		}
	}
	buf := map[string]event.TableStats{}
	names := append([]string(nil), eventTables...)
	for _, b := range a.events.Stats() {
		buf[b.Table] = b
		if !slices.Contains(names, b.Table) {
			names = append(names, b.Table)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b := buf[n]
		st := table.EventStat{
			Name: n, Type: "subscriber", Subscriptions: len(feeders[n]), Active: len(feeders[n]) > 0,
			Events: b.Added, Buffered: int64(b.Buffered), BufferDropped: b.Dropped, BufferExpired: b.Expired,
		}
		if len(feeders[n]) > 0 {
			st.Publisher = feeders[n][0]
		}
		out = append(out, st)
	}
	rs, ss := a.results.Stats(), a.status.Stats()
	out = append(out,
		table.EventStat{Name: "result_log", Type: "logger", Active: true, Events: rs.Appended,
			Buffered: int64(rs.Pending), BufferDropped: rs.Dropped + rs.Corrupt, TooLarge: a.oversizedLines.Load()},
		table.EventStat{Name: "status_log", Type: "logger", Active: true, Events: ss.Appended,
			Buffered: int64(ss.Pending), BufferDropped: ss.Dropped + ss.Corrupt},
		table.EventStat{Name: "distributed", Type: "logger", Active: a.client != nil, Events: a.distAnswered.Load(),
			TooLarge: a.distTooLarge.Load()},
		table.EventStat{Name: "schedule", Type: "logger", Active: true, TooLarge: a.schedTooLarge.Load()},
		table.EventStat{Name: "event_shutdown", Type: "logger", Active: true, BufferDropped: a.shutdownLost.Load()},
	)
	return out
}

// statusLine spools a status line of the given osquery severity.
func (a *Agent) statusLine(sev int, msg string) {
	_, file, line, _ := runtime.Caller(1)
	now := a.opts.Now()
	a.spoolStatus(osquery.StatusLine{
		HostIdentifier: a.hostID,
		CalendarTime:   osquery.CalendarTime(now),
		UnixTime:       osquery.Int(now.Unix()),
		Severity:       osquery.Int(sev),
		Filename:       baseName(file),
		Line:           osquery.Int(line),
		Message:        msg,
		Decorations:    a.statusDecorations(),
	})
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// applyFilePaths hands the config's FIM paths to the event sources.
func (a *Agent) applyFilePaths(c *agentConfig) {
	a.mu.Lock()
	m := a.evManager
	a.mu.Unlock()
	if m != nil {
		m.SetFilePaths(c.FilePaths, c.Exclude)
	}
}
