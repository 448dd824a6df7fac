package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// staged rows of one table in one batch, coerced, in column order.
type staged struct {
	t      *table
	ids    []string
	rows   [][]any
	seen   map[string]struct{}
	lo, hi time.Time
}

func (st *staged) add(id string, row []any, at time.Time) {
	if _, dup := st.seen[id]; dup {
		return // the first copy of an id in a batch wins
	}
	st.seen[id] = struct{}{}
	st.ids = append(st.ids, id)
	st.rows = append(st.rows, row)
	if at.IsZero() {
		at = time.Unix(0, 0)
	}
	if len(st.rows) == 1 || at.Before(st.lo) {
		st.lo = at
	}
	if len(st.rows) == 1 || at.After(st.hi) {
		st.hi = at
	}
}

// Append writes the batch. Rows whose event id the table already holds,
// or that repeat an id earlier in the batch, are dropped; the others get
// seq values above every seq of their table, in batch order. A batch with
// an invalid row is rejected whole with vigil.ErrInvalid before anything
// is written. Each table's rows go in one INSERT, which ClickHouse applies
// atomically up to max_insert_block_size rows; across tables a failed
// batch may be partly written, and appending it again completes it.
func (s *Store) Append(ctx context.Context, b vigil.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	parts, err := s.stage(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now().UTC().Truncate(time.Second)
	for _, st := range parts {
		if err := s.write(ctx, st, now); err != nil {
			return fmt.Errorf("clickhouse: append to %s: %w", st.t.name, err)
		}
	}
	s.createViews(ctx, s.views.Observe(b.Results))
	return nil
}

func (s *Store) write(ctx context.Context, st *staged, now time.Time) error {
	t := st.t
	if !t.seqKnown {
		if err := s.loadSeq(ctx, t); err != nil {
			return err
		}
	}
	// Ids are derived from the event's content including its time, so only
	// the batch's time range is searched: partition pruning keeps that cheap.
	q, err := Bind("SELECT event_id FROM "+s.qualified(t.name)+" WHERE event_time BETWEEN ? AND ? AND event_id IN ids",
		st.lo.Truncate(time.Second), st.hi)
	if err != nil {
		return err
	}
	existing, err := s.queryWithData(ctx, q, "ids", st.ids)
	if err != nil {
		return fmt.Errorf("checking ids: %w", err)
	}
	have := make(map[string]struct{}, len(existing))
	for _, id := range existing {
		have[id] = struct{}{}
	}
	idCol, seqCol, atCol := t.index[store.ColEventID], t.index[store.ColSeq], t.index[store.ColIngestedAt]
	var data []byte
	seq := t.seq
	for _, row := range st.rows {
		if _, ok := have[row[idCol].(string)]; ok {
			continue
		}
		seq++
		row[seqCol] = seq
		row[atCol] = now
		for i, v := range row {
			if i > 0 {
				data = append(data, '\t')
			}
			data = appendTSV(data, v)
		}
		data = append(data, '\n')
	}
	if seq == t.seq {
		return nil
	}
	if err := s.insertTSV(ctx, t, data); err != nil {
		// The insert may have been applied before the answer was lost:
		// read seq back before the next append rather than reuse numbers.
		t.seqKnown = false
		return err
	}
	t.seq = seq
	return nil
}

// stage validates the batch and converts it into rows by table.
func (s *Store) stage(b vigil.Batch) ([]*staged, error) {
	var out []*staged
	by := map[string]*staged{}
	get := func(name string) (*staged, error) {
		if st, ok := by[name]; ok {
			return st, nil
		}
		t, ok := s.tables[name]
		if !ok {
			return nil, fmt.Errorf("clickhouse: append: unknown table %q: %w", name, vigil.ErrInvalid)
		}
		st := &staged{t: t, seen: map[string]struct{}{}}
		by[name] = st
		out = append(out, st)
		return st, nil
	}
	for i, e := range b.Events {
		if e.Table == schema.ResultsTable {
			return nil, fmt.Errorf("clickhouse: append: event %d: %s takes ResultRows: %w", i, e.Table, vigil.ErrInvalid)
		}
		st, err := get(e.Table)
		if err != nil {
			return nil, err
		}
		if e.ID == "" {
			return nil, fmt.Errorf("clickhouse: append: event %d (%s): empty id: %w", i, e.Table, vigil.ErrInvalid)
		}
		t := st.t
		row := make([]any, len(t.cols))
		row[t.index[store.ColEventID]] = e.ID
		row[t.index[store.ColHostID]] = e.HostID
		row[t.index[store.ColEventTime]] = epochIfZero(e.Time)
		for k, v := range e.Fields {
			j, ok := t.index[k]
			if !ok || k != store.ColHostname && t.common[j] {
				return nil, fmt.Errorf("clickhouse: append: event %s: %q is not a column of %s: %w", e.ID, k, t.name, vigil.ErrInvalid)
			}
			cv, err := store.Coerce(t.cols[j].Type, v)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: append: event %s: column %s: %w", e.ID, k, err)
			}
			row[j] = cv
		}
		st.add(e.ID, row, e.Time)
	}
	for i, r := range b.Results {
		st, _ := get(schema.ResultsTable)
		if r.ID == "" {
			return nil, fmt.Errorf("clickhouse: append: result %d (%s): empty id: %w", i, r.Query, vigil.ErrInvalid)
		}
		t := st.t
		row := make([]any, len(t.cols))
		row[t.index[store.ColEventID]] = r.ID
		row[t.index[store.ColHostID]] = r.HostID
		row[t.index[store.ColEventTime]] = epochIfZero(r.Time)
		row[t.index["query_name"]] = r.Query
		row[t.index["action"]] = r.Action
		row[t.index["columns"]] = store.ResultColumns(&r)
		row[t.index["epoch"]] = r.Epoch
		row[t.index["counter"]] = r.Counter
		if r.Hostname != "" {
			row[t.index[store.ColHostname]] = r.Hostname
		}
		st.add(r.ID, row, r.Time)
	}
	return out, nil
}

// epochIfZero: event_time cannot be NULL (it keys the partitions).
func epochIfZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC()
}
