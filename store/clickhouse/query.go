package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// Query binds args into q (see Bind) and runs it read-only (readonly=1:
// no writes, no SET, no table functions), returning at most the store's
// RowLimit rows with Truncated set when there were more. Values are
// string, int64, float64, time.Time (UTC) or nil; UInt64 beyond int64 and
// nested values (arrays, tuples) come back as text.
func (s *Store) Query(ctx context.Context, q string, args ...any) (*store.Rows, error) {
	bound, err := Bind(q, args...)
	if err != nil {
		return nil, err
	}
	return s.query(ctx, bound, s.opts.RowLimit, true)
}

// query runs a bound statement and reads its JSONCompact answer.
func (s *Store) query(ctx context.Context, stmt string, limit int, readonly bool) (*store.Rows, error) {
	params := url.Values{}
	if readonly {
		params.Set("readonly", "1")
	}
	// The server stops producing rows (at a block boundary) past the limit.
	params.Set("max_result_rows", strconv.Itoa(limit+1))
	params.Set("result_overflow_mode", "break")
	// The newline ends a trailing line comment.
	stmt = strings.TrimRight(strings.TrimSpace(stmt), ";") + "\nFORMAT JSONCompact"
	body, err := s.request(ctx, stmt, nil, "", params)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return decodeJSONCompact(body, limit)
}

type jsonCompact struct {
	Meta []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"meta"`
	Data [][]json.RawMessage `json:"data"`
}

func decodeJSONCompact(r io.Reader, limit int) (*store.Rows, error) {
	var res jsonCompact
	dec := json.NewDecoder(r)
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("clickhouse: reading answer: %w", err)
	}
	out := &store.Rows{Columns: make([]string, len(res.Meta))}
	for i, m := range res.Meta {
		out.Columns[i] = m.Name
	}
	n := len(res.Data)
	if n > limit {
		n = limit
		out.Truncated = true
	}
	out.Rows = make([][]any, n)
	for i := range n {
		raw := res.Data[i]
		if len(raw) != len(res.Meta) {
			return nil, fmt.Errorf("clickhouse: row %d has %d values for %d columns", i, len(raw), len(res.Meta))
		}
		row := make([]any, len(raw))
		for j, v := range raw {
			val, err := convert(res.Meta[j].Type, v)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: row %d column %s: %w", i, res.Meta[j].Name, err)
			}
			row[j] = val
		}
		out.Rows[i] = row
	}
	return out, nil
}

// convert turns one JSONCompact value of ClickHouse type typ into a Go
// value of the kinds store.Rows promises.
func convert(typ string, raw json.RawMessage) (any, error) {
	if bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if inner, ok := strings.CutPrefix(typ, "Nullable("); ok {
		typ = strings.TrimSuffix(inner, ")")
	}
	if inner, ok := strings.CutPrefix(typ, "LowCardinality("); ok {
		typ = strings.TrimSuffix(inner, ")")
	}
	switch {
	case strings.HasPrefix(typ, "Int") || strings.HasPrefix(typ, "UInt"):
		s := strings.Trim(string(raw), `"`)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return s, nil
		}
		return nil, fmt.Errorf("%s value %s", typ, raw)
	case strings.HasPrefix(typ, "Float") || strings.HasPrefix(typ, "Decimal"):
		s := strings.Trim(string(raw), `"`)
		switch s {
		case "inf", "+inf":
			return math.Inf(1), nil
		case "-inf":
			return math.Inf(-1), nil
		case "nan", "-nan":
			return math.NaN(), nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s value %s", typ, raw)
		}
		return f, nil
	case strings.HasPrefix(typ, "DateTime") || typ == "Date":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%s value %s", typ, raw)
		}
		return parseTime(typ, s)
	case typ == "String" || strings.HasPrefix(typ, "FixedString") || strings.HasPrefix(typ, "Enum") || typ == "UUID":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%s value %s", typ, raw)
		}
		return s, nil
	}
	return string(raw), nil // arrays, tuples, nested: their JSON text
}

// parseTime reads a DateTime or Date in the type's time zone (UTC unless
// the type names another: Vigil's columns are DateTime('UTC')).
func parseTime(typ, s string) (any, error) {
	loc := time.UTC
	if i := strings.Index(typ, "('"); i > 0 {
		name := strings.TrimSuffix(typ[i+2:], "')")
		if l, err := time.LoadLocation(name); err == nil {
			loc = l
		}
	}
	layout := dateTimeLayout
	if typ == "Date" {
		layout = "2006-01-02"
	}
	if strings.HasPrefix(s, "0000-00-00") {
		return time.Unix(0, 0).UTC(), nil
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return nil, fmt.Errorf("%s value %q", typ, s)
	}
	return t.UTC(), nil
}

// DeleteBefore deletes rows whose event_time is before cutoff from every
// table and returns how many. It waits for ClickHouse's mutations to be
// applied, so the rows are gone when it returns.
func (s *Store) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total int64
	for _, t := range s.order {
		q, err := Bind("SELECT count() FROM "+s.qualified(t.name)+" WHERE event_time < ?", cutoff)
		if err != nil {
			return total, err
		}
		r, err := s.query(ctx, q, 1, false)
		if err != nil {
			return total, fmt.Errorf("clickhouse: delete: counting %s: %w", t.name, err)
		}
		n, _ := r.Rows[0][0].(int64)
		if n == 0 {
			continue
		}
		// seq must keep increasing after the newest rows are deleted.
		if err := s.setMeta(ctx, seqKey(t.name), strconv.FormatInt(t.seq, 10)); err != nil {
			return total, fmt.Errorf("clickhouse: delete: recording seq of %s: %w", t.name, err)
		}
		del, err := Bind("ALTER TABLE "+s.qualified(t.name)+" DELETE WHERE event_time < ?", cutoff)
		if err != nil {
			return total, err
		}
		if err := s.exec(ctx, del); err != nil {
			return total, fmt.Errorf("clickhouse: delete from %s: %w", t.name, err)
		}
		if err := s.waitMutations(ctx, t.name); err != nil {
			return total, err
		}
		total += n
	}
	s.log.Info("retention", "cutoff", cutoff, "deleted", total)
	return total, nil
}

func (s *Store) waitMutations(ctx context.Context, table string) error {
	q, err := Bind("SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0", s.opts.Database, table)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.opts.MutationTimeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		r, err := s.query(ctx, q, 1, false)
		if err != nil {
			return fmt.Errorf("clickhouse: delete: waiting for %s: %w", table, err)
		}
		if n, _ := r.Rows[0][0].(int64); n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clickhouse: delete from %s still running after %v: %w", table, s.opts.MutationTimeout, vigil.ErrUnavailable)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats reports the bytes on disk of the database's active parts and the
// rows of each table.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	st := store.Stats{Rows: map[string]int64{}, ResultViews: s.views.Stats()}
	q, err := Bind("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = ? AND active", s.opts.Database)
	if err != nil {
		return st, err
	}
	r, err := s.query(ctx, q, 1, false)
	if err != nil {
		return st, fmt.Errorf("clickhouse: stats: %w", err)
	}
	st.SizeBytes, _ = r.Rows[0][0].(int64)
	for _, t := range s.order {
		r, err := s.query(ctx, "SELECT count() FROM "+s.qualified(t.name), 1, false)
		if err != nil {
			return st, fmt.Errorf("clickhouse: stats: counting %s: %w", t.name, err)
		}
		st.Rows[t.name], _ = r.Rows[0][0].(int64)
	}
	return st, nil
}
