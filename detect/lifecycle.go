package detect

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// Lifecycle is implemented by a State that dedupes and suppresses matches
// (state.DB). When Options.State implements it, the engine commits through
// CommitMatches instead of CommitAlerts.
type Lifecycle interface {
	// CommitMatches records the matches of one rule and moves its
	// watermark on table to seq in one transaction. A match already
	// recorded is ignored; one matching an active suppression is counted,
	// not alerted; when window > 0 one with the same rule, host and group
	// key (the values of groupBy) as an open or acknowledged alert created
	// less than window ago adds to that alert's count; any other opens an
	// alert. It returns the alerts opened (with ids).
	CommitMatches(ctx context.Context, ruleID, table string, seq int64, matches []vigil.Alert,
		groupBy []string, window time.Duration) (created []vigil.Alert, deduped, suppressed int, err error)
}

// Notifier receives the alerts each commit opened (outputs). Notify must
// not block for long: queue and return.
type Notifier interface {
	Notify(ctx context.Context, alerts []vigil.Alert)
}

// Observer receives measurements of each rule (metrics).
type Observer interface {
	// RuleRun is called after each run of a rule with its duration and
	// how many matches it found (before dedupe and suppression).
	RuleRun(ruleID string, took time.Duration, matches int)
	// AlertLatency is called for each alert opened, with the time from
	// the matched event's ingestion to the alert's creation.
	AlertLatency(ruleID string, latency time.Duration)
}

// RuleStats are one rule's counters since the engine started.
type RuleStats struct {
	RuleID       string        `json:"rule_id"`
	Level        vigil.Level   `json:"level"`
	Runs         int64         `json:"runs"`
	Failures     int64         `json:"failures"` // runs whose query failed
	LastRun      time.Time     `json:"last_run"`
	LastDuration time.Duration `json:"last_duration_ns"`
	TotalTime    time.Duration `json:"total_time_ns"`
	Matches      int64         `json:"matches"` // rows found, before dedupe and suppression
	Alerts       int64         `json:"alerts"`  // alerts opened
	Deduped      int64         `json:"deduped"`
	Suppressed   int64         `json:"suppressed"`
	// Detection latency (event ingested_at → alert created) over the last
	// latencyWindow alerts; zero without alerts or without ingested_at
	// (correlation alerts carry no ingestion time).
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP99 time.Duration `json:"latency_p99_ns"`
	LatencyMax time.Duration `json:"latency_max_ns"`
}

const latencyWindow = 1024

type ruleStats struct {
	RuleStats
	lat  []time.Duration // ring of the last latencyWindow latencies
	next int
}

type statsTable struct {
	mu    sync.Mutex
	rules map[string]*ruleStats
	heads map[string]int64            // table -> max seq at the last run
	marks map[string]map[string]int64 // table -> rule -> watermark
}

// TableLag is how far detection is behind the store on one table: Head
// is the table's max seq at the last run, Watermark the lowest watermark
// of the rules reading it, Lag their difference (events not examined by
// every rule yet).
type TableLag struct {
	Table     string `json:"table"`
	Head      int64  `json:"head"`
	Watermark int64  `json:"watermark"`
	Lag       int64  `json:"lag"`
}

// Lag returns the detection lag of each table rules read, by table name.
func (e *Engine) Lag() []TableLag {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	out := []TableLag{}
	for table, h := range e.stats.heads {
		l := TableLag{Table: table, Head: h, Watermark: h}
		for _, wm := range e.stats.marks[table] {
			l.Watermark = min(l.Watermark, wm)
		}
		l.Lag = max(0, h-l.Watermark)
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b TableLag) int { return strings.Compare(a.Table, b.Table) })
	return out
}

func (e *Engine) noteHead(table string, head int64) {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	if e.stats.heads == nil {
		e.stats.heads = map[string]int64{}
	}
	e.stats.heads[table] = head
}

func (e *Engine) noteMark(ruleID, table string, wm int64) {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	if e.stats.marks == nil {
		e.stats.marks = map[string]map[string]int64{}
	}
	if e.stats.marks[table] == nil {
		e.stats.marks[table] = map[string]int64{}
	}
	e.stats.marks[table][ruleID] = wm
}

func (t *statsTable) get(id string) *ruleStats {
	if t.rules == nil {
		t.rules = map[string]*ruleStats{}
	}
	s, ok := t.rules[id]
	if !ok {
		s = &ruleStats{RuleStats: RuleStats{RuleID: id}}
		t.rules[id] = s
	}
	return s
}

// Stats returns per-rule counters, sorted by rule id.
func (e *Engine) Stats() []RuleStats {
	e.stats.mu.Lock()
	defer e.stats.mu.Unlock()
	out := make([]RuleStats, 0, len(e.stats.rules))
	for _, s := range e.stats.rules {
		rs := s.RuleStats
		if len(s.lat) > 0 {
			l := slices.Clone(s.lat)
			slices.Sort(l)
			rs.LatencyP50 = l[(len(l)-1)*50/100]
			rs.LatencyP99 = l[(len(l)-1)*99/100]
		}
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b RuleStats) int { return strings.Compare(a.RuleID, b.RuleID) })
	return out
}

func (e *Engine) recordRun(rule vigil.Rule, start time.Time, took time.Duration, matches int, failed bool) {
	ruleID := rule.ID
	e.stats.mu.Lock()
	s := e.stats.get(ruleID)
	s.Level = rule.Level
	s.Runs++
	if failed {
		s.Failures++
	}
	s.LastRun, s.LastDuration = start, took
	s.TotalTime += took
	s.Matches += int64(matches)
	e.stats.mu.Unlock()
	if e.opts.Observer != nil {
		e.opts.Observer.RuleRun(ruleID, took, matches)
	}
}

// commit hands one page of matches to the state and the opened alerts to
// the notifier, and records counters and latencies.
func (e *Engine) commit(ctx context.Context, c *compiled, table string, seq int64, matches []vigil.Alert, groupBy []string) (int, error) {
	var (
		created             []vigil.Alert
		deduped, suppressed int
	)
	if lc, ok := e.opts.State.(Lifecycle); ok {
		var err error
		created, deduped, suppressed, err = lc.CommitMatches(ctx, c.rule.ID, table, seq, matches, groupBy, e.opts.DedupeWindow)
		if err != nil {
			return 0, err
		}
	} else {
		n, err := e.opts.State.CommitAlerts(ctx, c.rule.ID, table, seq, matches)
		if err != nil {
			return 0, err
		}
		if n == len(matches) {
			created = matches // ids unknown, but these are the alerts
		} else {
			created = make([]vigil.Alert, n) // which ones is unknown
		}
	}
	e.noteMark(c.rule.ID, table, seq)
	now := e.opts.Now()
	e.stats.mu.Lock()
	s := e.stats.get(c.rule.ID)
	s.Alerts += int64(len(created))
	s.Deduped += int64(deduped)
	s.Suppressed += int64(suppressed)
	var lats []time.Duration
	for _, a := range created {
		at, ok := a.Fields[store.ColIngestedAt].(time.Time)
		if !ok || at.IsZero() {
			continue
		}
		l := now.Sub(at)
		if l < 0 {
			l = 0
		}
		lats = append(lats, l)
		if len(s.lat) < latencyWindow {
			s.lat = append(s.lat, l)
		} else {
			s.lat[s.next] = l
			s.next = (s.next + 1) % latencyWindow
		}
		s.LatencyMax = max(s.LatencyMax, l)
	}
	e.stats.mu.Unlock()
	if e.opts.Observer != nil {
		for _, l := range lats {
			e.opts.Observer.AlertLatency(c.rule.ID, l)
		}
	}
	if e.opts.Notifier != nil && len(created) > 0 && created[0].RuleID != "" {
		e.opts.Notifier.Notify(ctx, created)
	}
	return len(created), nil
}
