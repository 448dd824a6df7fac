package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// staged rows of one table in one batch, in the table's column order with
// ingested_at and seq left to fill at write time.
type stagedRows struct {
	t        *table
	rows     [][]driver.Value
	ids      map[string]struct{} // to drop repeats within the batch
	lo, hi   time.Time
	haveTime bool
	nullTime bool
}

func (r *stagedRows) add(id string, row []driver.Value, at time.Time) {
	if _, dup := r.ids[id]; dup {
		return // the first copy of an id in a batch wins
	}
	r.ids[id] = struct{}{}
	r.rows = append(r.rows, row)
	if at.IsZero() {
		r.nullTime = true
		return
	}
	if !r.haveTime || at.Before(r.lo) {
		r.lo = at
	}
	if !r.haveTime || at.After(r.hi) {
		r.hi = at
	}
	r.haveTime = true
}

// Append writes the batch in one transaction. Rows whose event id the
// table already holds, or that repeat an id earlier in the batch, are
// dropped; the others get seq values above every seq of their table, in
// batch order. A batch with an invalid row (unknown table or column, value
// of the wrong type, empty id) is rejected whole with vigil.ErrInvalid.
//
// How: the rows are converted to the tables' column order (Prepare);
// then, under the writer's lock and in one transaction, each table's
// batch ids go through the Appender into a temporary table on the writer
// connection, one join against the table finds those already stored, and
// the new rows go through the Appender straight into the table with seq
// numbered in Go. DuckDB's Appender writes into the connection's open
// transaction, so readers see the whole batch or none of it, and each row
// is copied once. After the commit, the result views that the batch's
// query and column names call for are created or replaced (views.go).
func (s *Store) Append(ctx context.Context, b vigil.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	write, err := s.Prepare(b)
	if err != nil {
		return err
	}
	return write(ctx)
}

// Prepare converts b for Append and returns the function that writes it,
// which may be called again after it failed. A caller with a pipeline
// (the ingest drainer) converts the next batch while the store writes
// the current one: conversion is about a quarter of an append's CPU time.
func (s *Store) Prepare(b vigil.Batch) (func(context.Context) error, error) {
	t0 := time.Now()
	// The raw results are converted on another CPU while the events are
	// converted here.
	results := s.stageResultsAsync(b.Results)
	events, err := s.stageEvents(b.Events)
	res, rerr := results()
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	p := &prepared{events: events, results: res, rows: b.Len(), convert: time.Since(t0)}
	return func(ctx context.Context) error { return s.write(ctx, p) }, nil
}

// prepared is a batch converted for the writer.
type prepared struct {
	events  []*stagedRows
	results *stagedResults // nil without results
	rows    int
	convert time.Duration
}

// write appends p in one transaction (see Append).
func (s *Store) write(ctx context.Context, p *prepared) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("duckdb: append: store closed: %w", vigil.ErrUnavailable)
	}
	start := time.Now()
	// The transaction is driven by statements rather than database/sql's Tx
	// because the Appender works on the raw connection, inside it.
	if _, err := s.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("duckdb: append: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			if _, err := s.conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				s.log.Error("rolling back an append", "err", err)
			}
		}
	}()
	var dedupe time.Duration
	now := s.now().UTC()
	next := make(map[*table]int64, len(p.events)+1)
	put := func(st *stagedRows) error {
		d := time.Now()
		existing, err := s.existing(ctx, st)
		if err != nil {
			return fmt.Errorf("duckdb: append: checking ids of %s: %w", st.t.name, err)
		}
		dedupe += time.Since(d)
		seq, err := s.appendRows(st, existing, now)
		if err != nil {
			return fmt.Errorf("duckdb: append: writing %s: %w", st.t.name, err)
		}
		next[st.t] = seq
		return nil
	}
	for _, st := range p.events {
		if err := put(st); err != nil {
			return err
		}
	}
	res := p.results
	if res != nil {
		if len(res.views) > 0 {
			// Until its views exist, the batch's first result seq is kept:
			// a crash before they are made is caught up at the next open.
			if _, err := s.conn.ExecContext(ctx, `INSERT OR IGNORE INTO `+metaTable+` VALUES (?, ?)`,
				viewsDueKey, fmt.Sprint(res.rows.t.seq+1)); err != nil {
				return fmt.Errorf("duckdb: append: %w", err)
			}
		}
		if err := put(res.rows); err != nil {
			return err
		}
	}
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("duckdb: append: committing: %w", err)
	}
	committed = true
	for t, seq := range next {
		t.seq = seq
	}
	if res != nil && len(res.views) > 0 && s.createViews(ctx, res.views) == 0 {
		s.viewsDone(ctx)
	}
	s.log.Debug("append", "rows", p.rows, "convert", p.convert, "dedupe", dedupe, "total", time.Since(start))
	return nil
}

// stagedResults are the converted raw result rows of a batch and the
// result views they call for.
type stagedResults struct {
	rows  *stagedRows
	views []store.ResultView
}

// stageResultsAsync converts results, and notes their query and column
// names for the result views, on another goroutine when there are enough
// to be worth it; the returned function waits for the outcome. A nil
// outcome means no results.
func (s *Store) stageResultsAsync(results []vigil.ResultRow) func() (*stagedResults, error) {
	stage := func() (*stagedResults, error) {
		st, err := s.stageResults(results)
		if err != nil || st == nil {
			return nil, err
		}
		return &stagedResults{rows: st, views: s.views.Observe(results)}, nil
	}
	if len(results) < 1000 {
		st, err := stage()
		return func() (*stagedResults, error) { return st, err }
	}
	var st *stagedResults
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, err = stage()
	}()
	return func() (*stagedResults, error) {
		<-done
		return st, err
	}
}

// existing returns the ids of st that its table already holds. It runs in
// the writer's open transaction.
func (s *Store) existing(ctx context.Context, st *stagedRows) (map[string]struct{}, error) {
	t := st.t
	if t.seq == 0 {
		return nil, nil // nothing was ever written to the table
	}
	if _, err := s.conn.ExecContext(ctx, `DELETE FROM temp.main.`+quoteIdent(idsTable)); err != nil {
		return nil, err
	}
	err := s.conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", idsTable)
		if err != nil {
			return err
		}
		idCol := t.index[store.ColEventID]
		for _, row := range st.rows {
			if err := a.AppendRow(row[idCol]); err != nil {
				a.Close()
				return err
			}
		}
		return a.Close()
	})
	if err != nil {
		return nil, err
	}
	q := t.dupes
	if st.nullTime {
		q = t.dupesN
	}
	lo, hi := st.lo, st.hi
	if !st.haveTime {
		lo, hi = time.Unix(0, 0), time.Unix(0, 0)
	}
	rows, err := s.conn.QueryContext(ctx, q, lo.UTC(), hi.UTC())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out map[string]struct{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]struct{}{}
		}
		out[id] = struct{}{}
	}
	return out, rows.Err()
}

// appendRows appends the rows of st whose ids are not in existing to the
// table, numbering seq from the table's current maximum, and returns the
// new maximum. It runs in the writer's open transaction.
func (s *Store) appendRows(st *stagedRows, existing map[string]struct{}, now time.Time) (int64, error) {
	t := st.t
	seq := t.seq
	err := s.conn.Raw(func(dc any) (err error) {
		// A fresh appender per batch: long-lived appenders have been seen
		// to grow memory (duckdb-go #23, #124).
		a, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "main", t.name)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := a.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		idCol, seqCol, atCol := t.index[store.ColEventID], t.index[store.ColSeq], t.index[store.ColIngestedAt]
		var nowV driver.Value = now // boxed once, not per row
		for _, row := range st.rows {
			if _, ok := existing[row[idCol].(string)]; ok {
				continue
			}
			seq++
			row[seqCol] = seq
			row[atCol] = nowV
			if err := a.AppendRow(row...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

// slab hands out row slices from big allocations: one per 1,024 rows
// instead of one per row, which the garbage collector feels at 100k rows.
type slab []driver.Value

func (sl *slab) row(n int) []driver.Value {
	if len(*sl) < n {
		*sl = make([]driver.Value, 1024*n)
	}
	r := (*sl)[:n:n]
	*sl = (*sl)[n:]
	return r
}

// boxCache boxes values into driver.Values, reusing the previous box when
// the value repeats (host, query, action and time repeat across a batch's
// rows): boxing a string or time allocates.
type boxCache struct {
	s   map[string]driver.Value
	t   time.Time
	tv  driver.Value
	set bool
}

func (c *boxCache) str(v string) driver.Value {
	if b, ok := c.s[v]; ok {
		return b
	}
	var b driver.Value = v
	if c.s == nil {
		c.s = map[string]driver.Value{}
	}
	if len(c.s) < 64 {
		c.s[v] = b
	}
	return b
}

func (c *boxCache) time(t time.Time) driver.Value {
	if c.set && t.Equal(c.t) && t.Location() == c.t.Location() {
		return c.tv
	}
	c.t, c.tv, c.set = t, timeOrNil(t), true
	return c.tv
}

func (s *Store) stageEvents(events []vigil.Event) ([]*stagedRows, error) {
	var out []*stagedRows
	var rows slab
	var box boxCache
	by := map[string]*stagedRows{}
	get := func(name string) (*stagedRows, error) {
		if st, ok := by[name]; ok {
			return st, nil
		}
		t, ok := s.tables[name]
		if !ok || name == schema.ResultsTable {
			return nil, fmt.Errorf("duckdb: append: unknown event table %q: %w", name, vigil.ErrInvalid)
		}
		// Most batches hold one event table: size for all of them.
		st := &stagedRows{t: t, ids: make(map[string]struct{}, len(events))}
		by[name] = st
		out = append(out, st)
		return st, nil
	}
	for i, e := range events {
		st, err := get(e.Table)
		if err != nil {
			return nil, err
		}
		if e.ID == "" {
			return nil, fmt.Errorf("duckdb: append: event %d (%s): empty id: %w", i, e.Table, vigil.ErrInvalid)
		}
		t := st.t
		row := rows.row(len(t.cols))
		row[t.index[store.ColEventID]] = e.ID
		row[t.index[store.ColHostID]] = box.str(e.HostID)
		row[t.index[store.ColEventTime]] = box.time(e.Time)
		for k, v := range e.Fields {
			j, ok := t.index[k]
			if !ok || k != store.ColHostname && t.common[j] {
				return nil, fmt.Errorf("duckdb: append: event %s: %q is not a column of %s: %w", e.ID, k, t.name, vigil.ErrInvalid)
			}
			cv, err := store.Coerce(t.cols[j].Type, v)
			if err != nil {
				return nil, fmt.Errorf("duckdb: append: event %s: column %s: %w", e.ID, k, err)
			}
			row[j] = cv
		}
		st.add(e.ID, row, e.Time)
	}
	return out, nil
}

func (s *Store) stageResults(results []vigil.ResultRow) (*stagedRows, error) {
	if len(results) == 0 {
		return nil, nil
	}
	t := s.tables[schema.ResultsTable]
	st := &stagedRows{t: t, ids: make(map[string]struct{}, len(results))}
	idCol, hostCol, timeCol := t.index[store.ColEventID], t.index[store.ColHostID], t.index[store.ColEventTime]
	queryCol, actionCol, colsCol := t.index["query_name"], t.index["action"], t.index["columns"]
	epochCol, counterCol, hostnameCol := t.index["epoch"], t.index["counter"], t.index[store.ColHostname]
	var rows slab
	var box boxCache
	for i, r := range results {
		if r.ID == "" {
			return nil, fmt.Errorf("duckdb: append: result %d (%s): empty id: %w", i, r.Query, vigil.ErrInvalid)
		}
		row := rows.row(len(t.cols))
		row[idCol] = r.ID
		row[hostCol] = box.str(r.HostID)
		row[timeCol] = box.time(r.Time)
		row[queryCol] = box.str(r.Query)
		row[actionCol] = box.str(r.Action)
		row[colsCol] = store.ResultColumns(&r)
		row[epochCol] = r.Epoch
		row[counterCol] = r.Counter
		if r.Hostname != "" {
			row[hostnameCol] = box.str(r.Hostname)
		}
		st.add(r.ID, row, r.Time)
	}
	return st, nil
}

func timeOrNil(t time.Time) driver.Value {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}
