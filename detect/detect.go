// Package detect is Vigil's detection engine: it loads Sigma rules,
// compiles them for the event store's SQL dialect (detect/sigma), and runs
// each one over the events that arrived since its watermark, turning every
// matching row into an alert exactly once. Control state (watermarks,
// alerts) sits behind the small State interface; events are read through
// store.Querier. cmd/vigil wires it; nothing else should import it.
//
// # Alert lifecycle
//
// With a State implementing Lifecycle (state.DB), each match (a rule and
// an event id) is recorded once, in the same transaction that moves the
// rule's watermark, and then:
//
//  1. Suppressed: if an active suppression matches it (every criterion it
//     sets holds: rule id; host id or hostname; a field's value as text),
//     the suppression's hit count goes up and no alert opens. A
//     suppression has an expiry and stops applying at it.
//  2. Deduplicated: else, with Options.DedupeWindow > 0, if an alert of the
//     same rule, host id and group key is open or acknowledged and was
//     created less than DedupeWindow before now, that alert's match count
//     goes up and its last-match time is set. The window is anchored at
//     the alert's creation, not slid by each match: a steady stream opens
//     one alert per window. A closed alert absorbs nothing. The group key
//     is the values of Options.GroupBy[rule id] for a plain rule (empty by
//     default: rule and host only) and of the group-by fields for a
//     correlation.
//  3. Otherwise an alert opens, with the rule's level as its severity
//     (medium when the rule has none), and goes to Options.Notifier.
//
// Openings, dedupes (one entry per alert per commit) and suppression hits
// are written to the audit log by actor "detect"; people's changes
// (status, suppressions) are audited by the API.
//
// # Correlations
//
// A correlation runs when any table it reads has new events, over the
// events since the oldest new one minus its lookback, so a window whose
// events arrive over several runs (or across a restart) still fires; hits
// found again by a later run are recorded matches and count nothing.
//
// # Measurements
//
// Stats reports per rule: runs, run time, matches, alerts, dedupes,
// suppressions, failures and the detection latency (the matched event's
// ingested_at to the alert's creation) over its last 1024 alerts; Lag
// reports how far each table's lowest watermark is behind its head.
// Options.Observer receives the same as they happen (package metrics).
package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/store"
)

// State is implemented by the control state (SQLite) package.
type State interface {
	// Watermark returns the highest seq of table already examined by the
	// rule, or 0 if none.
	Watermark(ctx context.Context, ruleID, table string) (int64, error)
	// CommitAlerts inserts alerts, ignoring any whose (rule_id, event_id)
	// already exists, and sets the watermark of (ruleID, table) to seq, in
	// one transaction.
	CommitAlerts(ctx context.Context, ruleID, table string, seq int64, alerts []vigil.Alert) (inserted int, err error)
}

// DefaultInterval is how often Run runs the rules unless told otherwise.
const DefaultInterval = 2 * time.Second

// Options configure an Engine.
type Options struct {
	Querier  store.Querier
	Dialect  store.Dialect // "" means DuckDB
	State    State
	Interval time.Duration // default DefaultInterval
	Logger   *slog.Logger  // nil discards
	Now      func() time.Time
	// Placeholders give values to %name% placeholders of rules using the
	// expand modifier; rules using an unknown placeholder fail to load.
	Placeholders map[string][]string
	// Mapping resolves logsources and fields; nil means the core schema
	// (sigma.SchemaMapping), whose tables every store creates. Use
	// sigma.CatalogMapping only with a store that creates
	// schema.SigmaTables().
	Mapping sigma.Mapping

	// DedupeWindow folds a match into an open or acknowledged alert of
	// the same rule, host and group key created less than this long ago
	// (its count goes up) instead of opening an alert; 0 opens one alert
	// per match. Needs a State implementing Lifecycle.
	DedupeWindow time.Duration
	// GroupBy names, per rule id, the event fields whose values form the
	// dedupe group key of a plain rule's alerts (none: rule and host
	// only). Correlations use their own group-by fields.
	GroupBy map[string][]string
	// Notifier, if set, gets every alert opened (outputs).
	Notifier Notifier
	// Observer, if set, gets per-rule run times and detection latencies
	// (metrics).
	Observer Observer
	// Yield, when set, is asked before each run: a channel means wait for
	// it to close (the control plane's live-query priority window, as
	// ingest's Options.Yield); nil means run.
	Yield func() <-chan struct{}
}

// Engine runs compiled rules over new events.
type Engine struct {
	opts    Options
	dialect sigma.Dialect
	dialErr error
	log     *slog.Logger

	mu     sync.RWMutex
	rules  []*compiled
	ids    map[string]bool
	parsed []*sigma.Rule // every rule loaded so far, for correlations to refer to
	warned map[string]bool

	stats statsTable
}

type compiled struct {
	rule  vigil.Rule
	query sigma.Query
	corr  *sigma.CorrelationQuery // set for correlation rules
}

// New returns an engine with no rules; call Load.
func New(opts Options) *Engine {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d, err := sigma.DialectFor(opts.Dialect)
	return &Engine{
		opts:    opts,
		dialect: d,
		dialErr: err,
		log:     logger.With("component", "detect"),
		ids:     map[string]bool{},
		warned:  map[string]bool{},
	}
}

// Load reads every *.yml and *.yaml file under root, compiles its rules
// and adds them to the engine. Each rule that cannot be used gives one
// error naming its file and line; the good rules load regardless. Meta
// filters apply to the rules loaded in the same call or later ones;
// correlations may refer to rules of earlier calls.
func (e *Engine) Load(fsys fs.FS, root string) []error {
	if e.dialErr != nil {
		return []error{e.dialErr}
	}
	var (
		errs   []error
		parsed []*sigma.Rule
	)
	walkErr := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("reading rules: %w", err))
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml")) {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading rule %s: %w", p, err))
			return nil
		}
		rules, perrs := sigma.Parse(p, data)
		parsed = append(parsed, rules...)
		errs = append(errs, perrs...)
		return nil
	})
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("reading rules under %s: %w", root, walkErr))
	}
	return append(errs, e.compileAll(parsed)...)
}

// compileAll compiles the rules parsed by one Load call. Correlations may
// refer to rules of earlier calls; meta filters apply to the rules loaded
// with them or after them.
func (e *Engine) compileAll(rules []*sigma.Rule) []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	coll, errs := sigma.NewCollection(append(append([]*sigma.Rule(nil), e.parsed...), rules...))
	e.parsed = coll.Rules()
	opts := sigma.Options{Dialect: e.dialect, Placeholders: e.opts.Placeholders, Mapping: e.opts.Mapping, Collection: coll}
	fresh := map[*sigma.Rule]bool{}
	for _, r := range rules {
		fresh[r] = true
	}
	for _, r := range coll.Rules() {
		if !fresh[r] {
			continue
		}
		file := r.File
		switch r.Kind {
		case sigma.KindFilter:
			continue // applied while compiling the rules it names
		case sigma.KindRule:
			if coll.Referenced(r) {
				// Rules a correlation refers to raise no alerts of their
				// own unless it says "generate: true".
				continue
			}
		}
		if r.ID == "" {
			errs = append(errs, &sigma.Error{File: file, Pos: r.Pos, Msg: fmt.Sprintf("rule %q has no id; alerts need one", r.Title)})
			continue
		}
		if e.ids[r.ID] {
			errs = append(errs, &sigma.Error{File: file, Pos: r.Pos, Msg: fmt.Sprintf("rule id %s is already loaded", r.ID)})
			continue
		}
		c := &compiled{}
		if r.Kind == sigma.KindCorrelation {
			q, err := sigma.CompileCorrelation(r, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c.corr = &q
		} else {
			q, err := sigma.Compile(r, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			c.query = q
		}
		level := r.Level
		if level == "" {
			level = vigil.LevelMedium
		}
		e.ids[r.ID] = true
		c.rule = vigil.Rule{ID: r.ID, Title: r.Title, Level: level, Description: strings.TrimSpace(r.Description),
			Source: path.Clean(file), Enabled: true}
		e.rules = append(e.rules, c)
	}
	return errs
}

// Rules returns the loaded rules, sorted by id.
func (e *Engine) Rules() []vigil.Rule {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]vigil.Rule, 0, len(e.rules))
	for _, c := range e.rules {
		out = append(out, c.rule)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SetEnabled turns a loaded rule on or off. A disabled rule is skipped by
// RunOnce and its watermark stays where it was, so enabling it again
// resumes where it stopped: events that arrived meanwhile are examined then,
// none is skipped. It fails with vigil.ErrNotFound for an unknown rule id.
func (e *Engine) SetEnabled(id string, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	found := false
	for _, c := range e.rules {
		if c.rule.ID == id {
			c.rule.Enabled = on
			found = true
		}
	}
	if !found {
		return fmt.Errorf("rule %q: %w", id, vigil.ErrNotFound)
	}
	return nil
}

// Run calls RunOnce every Interval until ctx is done, logging failures.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		if e.opts.Yield != nil {
			if ch := e.opts.Yield(); ch != nil {
				select {
				case <-ch: // the events wait in the store; nothing is skipped
				case <-ctx.Done():
					return nil
				}
			}
		}
		if n, err := e.RunOnce(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("detection run failed", "err", err)
		} else if n > 0 {
			e.log.Info("alerts raised", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce runs every rule over the events that arrived since its
// watermark and returns the number of new alerts. A rule whose query
// fails is logged and skipped; an error is returned only when the run
// could not go on (state or context failure).
func (e *Engine) RunOnce(ctx context.Context) (int, error) {
	e.mu.RLock()
	rules := make([]*compiled, 0, len(e.rules))
	for _, c := range e.rules {
		if c.rule.Enabled {
			rules = append(rules, c)
		}
	}
	e.mu.RUnlock()

	heads := map[string]int64{}
	head := func(table string) int64 {
		h, ok := heads[table]
		if !ok {
			var err error
			if h, err = e.maxSeq(ctx, table); err != nil {
				// An empty store may not have the table yet: say so once.
				e.mu.Lock()
				if !e.warned[table] {
					e.warned[table] = true
					e.log.Warn("cannot read table head; its rules wait", "table", table, "err", err)
				}
				e.mu.Unlock()
			} else {
				e.noteHead(table, h)
			}
			heads[table] = h
		}
		return h
	}
	total := 0
	for _, c := range rules {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var (
			n, matches int
			err        error
		)
		start := time.Now()
		if c.corr != nil {
			n, matches, err = e.runCorrelation(ctx, c, head)
		} else {
			n, matches, err = e.runRule(ctx, c, head(c.query.Table))
		}
		total += n
		if err != nil && ctx.Err() != nil {
			return total, ctx.Err() // stopping: not the rule's failure
		}
		var qe *queryError
		failed := errors.As(err, &qe)
		e.recordRun(c.rule, start, time.Since(start), matches, failed)
		if err != nil {
			if failed {
				e.log.Error("rule query failed; skipping the rule this run", "rule_id", c.rule.ID, "rule", c.rule.Title, "err", qe.err)
				continue
			}
			return total, err
		}
	}
	return total, nil
}

// queryError marks a failure of one rule's own query.
type queryError struct{ err error }

func (q *queryError) Error() string { return q.err.Error() }

func (e *Engine) maxSeq(ctx context.Context, table string) (int64, error) {
	rows, err := e.opts.Querier.Query(ctx, "SELECT max("+store.ColSeq+") FROM "+e.dialect.Ident(table))
	if err != nil {
		return 0, fmt.Errorf("reading max seq of %s: %w", table, err)
	}
	if len(rows.Rows) == 0 || len(rows.Rows[0]) == 0 || rows.Rows[0][0] == nil {
		return 0, nil
	}
	n, ok := toInt64(rows.Rows[0][0])
	if !ok {
		return 0, fmt.Errorf("reading max seq of %s: unexpected value %T", table, rows.Rows[0][0])
	}
	return n, nil
}

// runRule examines the events of (watermark, head] for one rule, in pages
// when the store truncates the result, moving the watermark with each
// committed page so that no event is examined twice or skipped.
func (e *Engine) runRule(ctx context.Context, c *compiled, head int64) (alerts, matches int, err error) {
	table := c.query.Table
	wm, err := e.opts.State.Watermark(ctx, c.rule.ID, table)
	if err != nil {
		return 0, 0, fmt.Errorf("reading watermark of rule %s: %w", c.rule.ID, err)
	}
	e.noteMark(c.rule.ID, table, wm)
	q := "SELECT * FROM " + e.dialect.Ident(table) +
		" WHERE " + store.ColSeq + " > ? AND " + store.ColSeq + " <= ? AND (" + c.query.Where + ")" +
		" ORDER BY " + store.ColSeq
	total := 0
	for wm < head {
		rows, err := e.opts.Querier.Query(ctx, q, wm, head)
		if err != nil {
			return total, matches, &queryError{err}
		}
		upTo := head
		if rows.Truncated && len(rows.Rows) > 0 {
			// Only the rows we got are examined; the rest come next page.
			last, ok := toInt64(rowValue(rows, len(rows.Rows)-1, store.ColSeq))
			if !ok || last <= wm {
				return total, matches, &queryError{fmt.Errorf("truncated result without usable %s", store.ColSeq)}
			}
			upTo = last
		}
		found := e.alerts(c, table, rows)
		matches += len(found)
		n, err := e.commit(ctx, c, table, upTo, found, e.opts.GroupBy[c.rule.ID])
		if err != nil {
			return total, matches, fmt.Errorf("committing alerts of rule %s: %w", c.rule.ID, err)
		}
		total += n
		wm = upTo
	}
	return total, matches, nil
}

func (e *Engine) alerts(c *compiled, table string, rows *store.Rows) []vigil.Alert {
	now := e.opts.Now().UTC()
	out := make([]vigil.Alert, 0, len(rows.Rows))
	for _, m := range rows.Maps() {
		a := vigil.Alert{
			RuleID:     c.rule.ID,
			RuleTitle:  c.rule.Title,
			Level:      c.rule.Level,
			EventTable: table,
			CreatedAt:  now,
			Status:     vigil.AlertOpen,
			Fields:     m,
		}
		a.HostID, _ = m[store.ColHostID].(string)
		a.Hostname, _ = m[store.ColHostname].(string)
		a.EventID, _ = m[store.ColEventID].(string)
		if t, ok := m[store.ColEventTime].(time.Time); ok {
			a.EventTime = t.UTC()
		}
		out = append(out, a)
	}
	return out
}

func rowValue(rows *store.Rows, i int, col string) any {
	for j, c := range rows.Columns {
		if c == col {
			return rows.Rows[i][j]
		}
	}
	return nil
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}
