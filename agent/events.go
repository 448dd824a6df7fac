package agent

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

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
	var prevLoss uint64
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		msg, loss := a.eventCounters()
		sev := 0
		if loss > prevLoss {
			sev = 1
			msg = fmt.Sprintf("event rows lost since last report: %d; %s", loss-prevLoss, msg)
		}
		prevLoss = loss
		a.statusLine(sev, msg)
	}
}

// eventCounters renders every counter on one line and sums the losses.
func (a *Agent) eventCounters() (string, uint64) {
	var parts []string
	var loss uint64
	for _, s := range a.EventStats() {
		if !s.Active {
			parts = append(parts, fmt.Sprintf("%s inactive (%s)", s.Source, s.Error))
			continue
		}
		l := s.KernelLost + s.SocketOverflows + s.QueueDropped + s.SequenceGaps
		loss += l
		parts = append(parts, fmt.Sprintf("%s events=%d kernel_lost=%d socket_overflows=%d queue_dropped=%d sequence_gaps=%d incomplete=%d proc_gone=%d",
			s.Source, s.Events, s.KernelLost, s.SocketOverflows, s.QueueDropped, s.SequenceGaps, s.Incomplete, s.ProcGone))
	}
	for _, b := range a.events.Stats() {
		loss += b.Dropped
		parts = append(parts, fmt.Sprintf("%s added=%d buffered=%d dropped=%d expired=%d", b.Table, b.Added, b.Buffered, b.Dropped, b.Expired))
	}
	if len(parts) == 0 {
		return "event counters: no event source", loss
	}
	return "event counters: " + strings.Join(parts, "; "), loss
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
