// Package ingest turns osquery log batches (result and status lines from
// /log) into validated, normalised vigil.Batches and hands them to a
// store.Appender. It owns decoding of osquery's result formats, the
// normalisation of rows into the event schema, rejection accounting and
// backpressure. The control plane's /log handler calls it; it imports the
// schema, osquery wire types and store contracts, never a store backend.
//
// Every result row is kept in the raw results table (schema.ResultsTable),
// where the store also gives each query a view results_<query> with its
// columns (store.ResultViews).
// Rows of queries whose osquery table maps to an event table (for example
// process_events -> process_creation) also become events, for "added" and
// "snapshot" rows. Status lines are kept in the results table too, under
// the query name StatusQuery with action "status", so that agent errors
// can be queried like everything else.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// StatusQuery is the query_name under which status log lines are stored.
const StatusQuery = "__status"

// ActionStatus is the action of stored status lines.
const ActionStatus = "status"

// Defaults for Options.
const (
	DefaultMaxLineBytes   = 8 << 20
	DefaultMaxRowsPerLine = 1 << 20
	DefaultMaxPendingRows = 2_000_000
)

// Options configures New.
type Options struct {
	Appender store.Appender
	// QueryTable returns the osquery table a scheduled query reads (e.g.
	// from the served config via schema.OsqueryTableOf); "" if unknown.
	// When it is unknown, ingest also tries the query name itself and, for
	// pack queries (pack_<pack>_<query>), each "_"-delimited tail of the
	// name, longest first, that is an osquery table schema.ForOsqueryTable
	// knows.
	QueryTable func(queryName string) string
	Logger     *slog.Logger
	// Now is the clock of Stats.LastAppended; nil means time.Now.
	Now func() time.Time
	// MaxLineBytes rejects longer lines (default DefaultMaxLineBytes).
	MaxLineBytes int
	// MaxRowsPerLine rejects lines with more rows (default DefaultMaxRowsPerLine).
	MaxRowsPerLine int
	// WAL, when set, makes Log durable before the store has the rows: Log
	// appends the request to the WAL and returns after its group commit;
	// Run drains the WAL into the Appender in the background. A full WAL
	// makes Log fail with vigil.ErrUnavailable. Without a WAL, Log returns
	// after the Appender has the rows.
	WAL *wal.WAL
	// MaxPendingRows bounds rows handed to the Appender and not yet
	// acknowledged by it, over all concurrent Log calls. A Log call that
	// would exceed it fails at once with vigil.ErrUnavailable, so that
	// senders back off (503) instead of piling up memory
	// (default DefaultMaxPendingRows).
	MaxPendingRows int
	// Yield, when set, is asked before each read of the WAL, between the
	// records of a batch being decoded and before each append: a non-nil
	// channel makes the drainer wait until it closes. The control plane
	// uses it to keep the cores for a live query's answers for a moment
	// (at 10,000 agents with osquery's default log interval, draining
	// beside the fan-out doubled the time until every answer was in);
	// what arrives meanwhile is durable in the WAL and drained after.
	Yield func() <-chan struct{}
}

// Ingester decodes, normalises and appends log batches. It is safe for
// concurrent use.
type Ingester struct {
	app        store.Appender
	queryTable func(string) string
	log        *slog.Logger
	now        func() time.Time
	maxLine    int
	maxRows    int
	maxPending int64
	yield      func() <-chan struct{}

	pending atomic.Int64 // rows handed to the appender, not yet acknowledged
	stats   stats

	wal       *wal.WAL
	drained   sync.Mutex
	drainedCh chan struct{} // closed and replaced after each drained batch
}

// New returns an Ingester.
func New(opts Options) *Ingester {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	if opts.MaxRowsPerLine <= 0 {
		opts.MaxRowsPerLine = DefaultMaxRowsPerLine
	}
	if opts.MaxPendingRows <= 0 {
		opts.MaxPendingRows = DefaultMaxPendingRows
	}
	return &Ingester{
		app:        opts.Appender,
		queryTable: opts.QueryTable,
		log:        opts.Logger.With("component", "ingest"),
		now:        opts.Now,
		maxLine:    opts.MaxLineBytes,
		maxRows:    opts.MaxRowsPerLine,
		maxPending: int64(opts.MaxPendingRows),
		yield:      opts.Yield,
		stats:      stats{rejected: map[string]int64{}},
		wal:        opts.WAL,
		drainedCh:  make(chan struct{}),
	}
}

// Log handles the data of one /log request from host. logType is "result"
// or "status". Lines are decoded one by one; a bad line is counted with its
// reason and skipped, never failing the others. The good lines become one
// vigil.Batch for the Appender.
//
// Log returns nil only once the request is durable, so the caller may
// acknowledge it: with a WAL (Options.WAL), after the request's group
// commit (Run appends it later; decoding then happens in Run); without
// one, after the Appender has the batch.
//
// Errors: vigil.ErrInvalid for an unknown log type or a batch the store
// refused as invalid; vigil.ErrUnavailable when the store failed or cannot
// keep up, or the WAL is full (the sender should retry later).
func (i *Ingester) Log(ctx context.Context, host vigil.Host, logType string, lines []json.RawMessage) error {
	if i.wal != nil {
		return i.logWAL(ctx, host, logType, lines)
	}
	b, accepted, err := i.decode(host, logType, lines)
	if err != nil {
		return err
	}
	return i.append(ctx, host, b, accepted)
}

// logWAL makes the request durable in the WAL; Run decodes and appends it.
func (i *Ingester) logWAL(ctx context.Context, host vigil.Host, logType string, lines []json.RawMessage) error {
	if logType != osquery.LogTypeResult && logType != osquery.LogTypeStatus {
		i.stats.add(&stats{rejectedLines: int64(len(lines)), rejected: map[string]int64{ReasonUnknownType: int64(len(lines))}})
		return fmt.Errorf("ingest: host %s: log_type %q is neither %q nor %q: %w",
			host.ID, logType, osquery.LogTypeResult, osquery.LogTypeStatus, vigil.ErrInvalid)
	}
	if len(lines) == 0 {
		return nil
	}
	if err := i.wal.Append(ctx, encodeRecord(host, logType, lines)); err != nil {
		if errors.Is(err, wal.ErrFull) {
			i.stats.add(&stats{unavailable: 1})
		}
		return fmt.Errorf("ingest: host %s: %w", host.ID, err)
	}
	return nil
}

// Decode turns the lines of one /log request into a batch without
// appending it, counting rejected lines in Stats. Log is Decode followed by
// the append.
func (i *Ingester) Decode(host vigil.Host, logType string, lines []json.RawMessage) (vigil.Batch, error) {
	b, _, err := i.decode(host, logType, lines)
	return b, err
}

func (i *Ingester) decode(host vigil.Host, logType string, lines []json.RawMessage) (vigil.Batch, int, error) {
	return i.decodeFrom(host, logType, lines, 0)
}

// decodeFrom is decode for lines that start at index first of a request.
func (i *Ingester) decodeFrom(host vigil.Host, logType string, lines []json.RawMessage, first int) (vigil.Batch, int, error) {
	var b vigil.Batch
	var local stats
	switch logType {
	case osquery.LogTypeResult:
		b = i.decodeResults(host, lines, first, &local)
		local.events = int64(len(b.Events))
	case osquery.LogTypeStatus:
		for idx, raw := range lines {
			r, err := i.statusRow(host, raw)
			if err != nil {
				local.reject(reasonOf(err))
				i.logReject(host, logType, idx, err)
				continue
			}
			b.Results = append(b.Results, r)
			local.lines++
			local.status++
		}
	default:
		i.stats.add(&stats{rejectedLines: int64(len(lines)), rejected: map[string]int64{ReasonUnknownType: int64(len(lines))}})
		return b, 0, fmt.Errorf("ingest: host %s: log_type %q is neither %q nor %q: %w",
			host.ID, logType, osquery.LogTypeResult, osquery.LogTypeStatus, vigil.ErrInvalid)
	}
	local.rows = int64(len(b.Results)) - local.status
	i.stats.add(&local)
	return b, int(local.lines), nil
}

// parallelLines is the batch size from which result lines are decoded on
// all CPUs.
const parallelLines = 4096

// decodeResults decodes result lines, in parallel chunks for big batches;
// the batch keeps the order of the lines either way.
func (i *Ingester) decodeResults(host vigil.Host, lines []json.RawMessage, first int, st *stats) vigil.Batch {
	workers := runtime.GOMAXPROCS(0)
	if len(lines) < parallelLines || workers < 2 {
		var b vigil.Batch
		i.decodeChunk(host, lines, first, &b, st)
		return b
	}
	chunk := (len(lines) + workers - 1) / workers
	parts := make([]vigil.Batch, workers)
	stats := make([]stats, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := min(w*chunk, len(lines)), min((w+1)*chunk, len(lines))
		wg.Go(func() { i.decodeChunk(host, lines[lo:hi], first+lo, &parts[w], &stats[w]) })
	}
	wg.Wait()
	var b vigil.Batch
	nr, ne := 0, 0
	for w := range parts {
		nr += len(parts[w].Results)
		ne += len(parts[w].Events)
	}
	b.Results = make([]vigil.ResultRow, 0, nr)
	b.Events = make([]vigil.Event, 0, ne)
	for w := range parts {
		b.Results = append(b.Results, parts[w].Results...)
		b.Events = append(b.Events, parts[w].Events...)
		st.lines += stats[w].lines
		st.rejectedLines += stats[w].rejectedLines
		for k, v := range stats[w].rejected {
			if st.rejected == nil {
				st.rejected = map[string]int64{}
			}
			st.rejected[k] += v
		}
	}
	return b
}

func (i *Ingester) decodeChunk(host vigil.Host, lines []json.RawMessage, first int, b *vigil.Batch, st *stats) {
	n := normaliser{ing: i, host: host, tables: map[string]tableRef{}, dec: lineDecoders.Get().(*lineDecoder)}
	defer lineDecoders.Put(n.dec)
	// Most lines are one event-format row: size for that.
	if b.Results == nil {
		b.Results = make([]vigil.ResultRow, 0, len(lines))
	}
	for idx, raw := range lines {
		if err := n.line(raw, b); err != nil {
			st.reject(reasonOf(err))
			i.logReject(host, osquery.LogTypeResult, first+idx, err)
			continue
		}
		st.lines++
	}
}

func (i *Ingester) logReject(host vigil.Host, logType string, idx int, err error) {
	i.log.Warn("rejected log line", "host_id", host.ID, "log_type", logType, "line", idx, "reason", reasonOf(err), "err", err)
}

// append hands b to the Appender with backpressure.
func (i *Ingester) append(ctx context.Context, host vigil.Host, b vigil.Batch, lines int) error {
	n := int64(b.Len())
	if n == 0 {
		return nil
	}
	if p := i.pending.Add(n); p > i.maxPending && p != n {
		i.pending.Add(-n)
		i.stats.add(&stats{unavailable: 1})
		return fmt.Errorf("ingest: host %s: %d rows already waiting for the store: %w", host.ID, p-n, vigil.ErrUnavailable)
	}
	defer i.pending.Add(-n)
	if err := i.app.Append(ctx, b); err != nil {
		if errors.Is(err, vigil.ErrInvalid) {
			i.stats.add(&stats{storeRejected: 1})
			return fmt.Errorf("ingest: host %s: store refused a batch of %d rows: %w", host.ID, n, err)
		}
		i.stats.add(&stats{unavailable: 1})
		if errors.Is(err, vigil.ErrUnavailable) {
			return fmt.Errorf("ingest: host %s: appending %d rows: %w", host.ID, n, err)
		}
		return fmt.Errorf("ingest: host %s: appending %d rows: %w: %w", host.ID, n, vigil.ErrUnavailable, err)
	}
	i.stats.add(&stats{appended: n, appendedLines: int64(lines), lastAppended: i.now()})
	return nil
}

func (i *Ingester) statusRow(host vigil.Host, raw []byte) (vigil.ResultRow, error) {
	if len(raw) > i.maxLine {
		return vigil.ResultRow{}, reject(ReasonTooLarge, "status line of %d bytes, limit %d", len(raw), i.maxLine)
	}
	s, t, cols, err := decodeStatus(raw)
	if err != nil {
		return vigil.ResultRow{}, err
	}
	return vigil.ResultRow{
		ID:       schema.EventID(host.ID, StatusQuery, 0, int64(s.UnixTime), ActionStatus, 0, cols),
		HostID:   host.ID,
		Hostname: host.Hostname,
		Query:    StatusQuery,
		Action:   ActionStatus,
		Time:     t,
		Columns:  cols,
	}, nil
}

// tableRef is the normalisation of one query's rows, if any.
type tableRef struct {
	table  schema.Table
	source schema.Source
	ok     bool
}

// normaliser turns the result lines of one request into a batch.
type normaliser struct {
	ing      *Ingester
	host     vigil.Host
	tables   map[string]tableRef // by query name, for this request
	dec      *lineDecoder
	hostname any
}

func (n *normaliser) line(raw []byte, b *vigil.Batch) error {
	if len(raw) > n.ing.maxLine {
		return reject(ReasonTooLarge, "result line of %d bytes, limit %d", len(raw), n.ing.maxLine)
	}
	r, err := n.dec.decodeResult(raw)
	if err != nil {
		return err
	}
	total := 0
	for _, set := range r.sets {
		total += len(set.rows)
	}
	if total > n.ing.maxRows {
		return reject(ReasonTooManyRows, "query %q: %d rows in one line, limit %d", r.line.Name, total, n.ing.maxRows)
	}
	ref := n.lookup(r.line.Name)
	l := &r.line
	epoch, counter := int64(l.Epoch), int64(l.Counter)
	for k := range r.sets {
		set := &r.sets[k]
		for idx, row := range set.rows {
			meta := set.meta(idx)
			var id string
			if meta.names != nil {
				id = schema.EventIDSorted(n.host.ID, l.Name, epoch, counter, set.action, idx, meta.names, row)
			} else {
				id = schema.EventID(n.host.ID, l.Name, epoch, counter, set.action, idx, row)
			}
			b.Results = append(b.Results, vigil.ResultRow{
				ID: id, HostID: n.host.ID, Hostname: n.host.Hostname, Query: l.Name, Action: set.action,
				Time: r.time, Epoch: epoch, Counter: counter, Columns: row, ColumnsJSON: meta.encoded,
			})
			if !ref.ok || set.action == osquery.ActionRemoved {
				continue
			}
			fields, at := ref.source.Map(row)
			if at.IsZero() {
				at = r.time
			}
			if n.host.Hostname != "" {
				if n.hostname == nil {
					n.hostname = n.host.Hostname // boxed once per request, not per event
				}
				fields[store.ColHostname] = n.hostname
			}
			b.Events = append(b.Events, vigil.Event{
				ID: id, Table: ref.table.Name, HostID: n.host.ID, Time: at, Fields: fields,
			})
		}
	}
	return nil
}

// lookup finds the event table rows of a query normalise into.
func (n *normaliser) lookup(query string) tableRef {
	if ref, ok := n.tables[query]; ok {
		return ref
	}
	ref := n.ing.resolve(query)
	n.tables[query] = ref
	return ref
}

func (i *Ingester) resolve(query string) tableRef {
	if i.queryTable != nil {
		if osq := i.queryTable(query); osq != "" {
			t, s, ok := schema.ForOsqueryTable(osq)
			return tableRef{t, s, ok}
		}
	}
	for _, cand := range candidates(query) {
		if t, s, ok := schema.ForOsqueryTable(cand); ok {
			return tableRef{t, s, true}
		}
	}
	return tableRef{}
}

// candidates are the names a query's osquery table may be guessed from:
// the name itself, then for pack queries (pack_<pack>_<query>) every tail
// after a "_", longest first (pack and query names may contain "_" too).
func candidates(query string) []string {
	out := []string{query}
	rest, ok := strings.CutPrefix(query, "pack_")
	if !ok {
		return out
	}
	for {
		out = append(out, rest)
		j := strings.IndexByte(rest, '_')
		if j < 0 {
			return out
		}
		rest = rest[j+1:]
	}
}

// Stats are the Ingester's counters since New.
type Stats struct {
	LinesAccepted  int64            // lines decoded into the batch
	LinesRejected  int64            // lines skipped; by reason in Rejected
	LinesAppended  int64            // lines of batches the store acknowledged
	RowsAccepted   int64            // raw result rows decoded (status lines not included)
	EventsAccepted int64            // normalised events decoded
	StatusLines    int64            // status lines decoded
	RowsAppended   int64            // rows (results + events) the store acknowledged
	Unavailable    int64            // batches refused with ErrUnavailable
	StoreRejected  int64            // batches the store refused as invalid
	Rejected       map[string]int64 // rejected lines by reason (Reason* constants)
	LastAppended   time.Time        // when the store last acknowledged a batch
	Yielded        time.Duration    // time the drainer stood aside (Options.Yield)
	WAL            *wal.Stats       // the WAL's counters (pending bytes, commits); nil without a WAL
}

type stats struct {
	mu                                 sync.Mutex
	lines, rejectedLines, rows, events int64
	status, appended, appendedLines    int64
	unavailable, storeRejected         int64
	rejected                           map[string]int64
	lastAppended                       time.Time
	yielded                            time.Duration
}

func (s *stats) reject(reason string) {
	if s.rejected == nil {
		s.rejected = map[string]int64{}
	}
	s.rejected[reason]++
	s.rejectedLines++
}

func (s *stats) add(o *stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines += o.lines
	s.rejectedLines += o.rejectedLines
	s.rows += o.rows
	s.events += o.events
	s.status += o.status
	s.appended += o.appended
	s.appendedLines += o.appendedLines
	s.unavailable += o.unavailable
	s.storeRejected += o.storeRejected
	s.yielded += o.yielded
	for k, v := range o.rejected {
		s.rejected[k] += v
	}
	if o.lastAppended.After(s.lastAppended) {
		s.lastAppended = o.lastAppended
	}
}

// Stats returns a snapshot of the counters.
func (i *Ingester) Stats() Stats {
	s := &i.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		LinesAccepted: s.lines, LinesRejected: s.rejectedLines, LinesAppended: s.appendedLines,
		RowsAccepted: s.rows, EventsAccepted: s.events, StatusLines: s.status,
		RowsAppended: s.appended, Unavailable: s.unavailable, StoreRejected: s.storeRejected,
		Rejected: make(map[string]int64, len(s.rejected)), LastAppended: s.lastAppended,
		Yielded: s.yielded,
	}
	if i.wal != nil {
		ws := i.wal.Stats()
		out.WAL = &ws
	}
	for k, v := range s.rejected {
		out.Rejected[k] = v
	}
	return out
}
