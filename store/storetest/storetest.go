// Package storetest is the conformance suite every event store backend
// (store/duckdb, store/clickhouse, ...) passes, run against the real
// engine. Backends call Run from their own tests; nothing else imports it.
//
// The suite speaks only SQL that every dialect understands (count, max,
// comparisons, ORDER BY, ? placeholders) and asserts the store contract:
// idempotent appends by event id, strictly increasing seq per table that a
// reader never sees go backwards, queries by host and time, retention and
// concurrent readers during writes.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Backend is what the suite needs from a store.
type Backend interface {
	store.Appender
	store.Querier
	store.Retainer
	Stats(ctx context.Context) (store.Stats, error)
	Dialect() store.Dialect
}

// Run runs the conformance suite. open returns a new, empty backend for
// each subtest and arranges its closing with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"AppendRoundTrip", testAppendRoundTrip},
		{"ResultsRoundTrip", testResultsRoundTrip},
		{"DedupeSameBatchTwice", testDedupeSameBatchTwice},
		{"DedupeWithinBatch", testDedupeWithinBatch},
		{"SeqStrictlyIncreasing", testSeqStrictlyIncreasing},
		{"QueryByHostAndTime", testQueryByHostAndTime},
		{"Retention", testRetention},
		{"ConcurrentReaders", testConcurrentReaders},
		{"InvalidBatchRejectedWhole", testInvalidBatchRejectedWhole},
		{"EmptyBatch", testEmptyBatch},
		{"Stats", testStats},
		{"BadQuery", testBadQuery},
		{"ResultViews", testResultViews},
		{"ResultViewsGrow", testResultViewsGrow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// base is a whole second so that every backend's timestamp precision keeps it.
var base = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// valueFor returns a deterministic value of col's type for row i.
func valueFor(col schema.Column, i int) any {
	switch col.Type {
	case schema.Text:
		return fmt.Sprintf("%s-%d ünï 'q\" \\ %%_", col.Name, i)
	case schema.BigInt:
		return int64(1000*i + len(col.Name))
	case schema.Double:
		return float64(i) + 0.5
	case schema.Bool:
		return i%2 == 0
	case schema.Timestamp:
		return base.Add(time.Duration(i) * time.Hour)
	}
	panic("storetest: unknown column type " + string(col.Type))
}

// fullEvent returns an event of table t with every column of the table set.
func fullEvent(t schema.Table, host string, i int, at time.Time) vigil.Event {
	f := map[string]any{store.ColHostname: "host-" + host}
	for _, c := range t.Columns {
		f[c.Name] = valueFor(c, i)
	}
	return vigil.Event{
		ID:     fmt.Sprintf("%s-%s-%d", t.Name, host, i),
		Table:  t.Name,
		HostID: host,
		Time:   at,
		Fields: f,
	}
}

func procEvent(host string, i int, at time.Time) vigil.Event {
	t, _ := schema.Lookup("process_creation")
	return fullEvent(t, host, i, at)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, b Backend, batch vigil.Batch) {
	t.Helper()
	if err := b.Append(ctxT(t), batch); err != nil {
		t.Fatalf("Append(%d rows): %v", batch.Len(), err)
	}
}

func mustQuery(t *testing.T, b Backend, q string, args ...any) *store.Rows {
	t.Helper()
	rows, err := b.Query(ctxT(t), q, args...)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	return rows
}

// Int converts a numeric value from Rows to int64 (backends may return
// unsigned or big integers for counts).
func Int(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case uint64:
		return int64(n), nil
	case uint32:
		return int64(n), nil
	case float64:
		return int64(n), nil
	case *big.Int:
		return n.Int64(), nil
	case string:
		return strconv.ParseInt(n, 10, 64)
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("storetest: %T is not an integer", v)
}

func mustInt(t *testing.T, v any) int64 {
	t.Helper()
	n, err := Int(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func count(t *testing.T, b Backend, table string) int64 {
	t.Helper()
	r := mustQuery(t, b, "SELECT count(*) AS n FROM "+table)
	if len(r.Rows) != 1 {
		t.Fatalf("count(%s): %d rows", table, len(r.Rows))
	}
	return mustInt(t, r.Rows[0][0])
}

func testAppendRoundTrip(t *testing.T, b Backend) {
	var batch vigil.Batch
	for ti, tbl := range schema.Tables() {
		for i := range 3 {
			batch.Events = append(batch.Events, fullEvent(tbl, "h1", i, base.Add(time.Duration(ti*10+i)*time.Second)))
		}
	}
	mustAppend(t, b, batch)

	for ti, tbl := range schema.Tables() {
		rows := mustQuery(t, b, "SELECT * FROM "+tbl.Name+" WHERE host_id = ? ORDER BY seq", "h1")
		if len(rows.Rows) != 3 {
			t.Fatalf("%s: got %d rows, want 3", tbl.Name, len(rows.Rows))
		}
		want := tbl.AllColumns()
		if len(rows.Columns) != len(want) {
			t.Fatalf("%s: columns %v, want %d columns", tbl.Name, rows.Columns, len(want))
		}
		for j, c := range want {
			if rows.Columns[j] != c.Name {
				t.Fatalf("%s: column %d is %q, want %q", tbl.Name, j, rows.Columns[j], c.Name)
			}
		}
		for i, m := range rows.Maps() {
			if got, want := m[store.ColEventID], fmt.Sprintf("%s-h1-%d", tbl.Name, i); got != want {
				t.Errorf("%s row %d: event_id %v, want %v", tbl.Name, i, got, want)
			}
			if got := m[store.ColHostname]; got != "host-h1" {
				t.Errorf("%s row %d: hostname %v", tbl.Name, i, got)
			}
			wantTime := base.Add(time.Duration(ti*10+i) * time.Second)
			if got, ok := m[store.ColEventTime].(time.Time); !ok || !got.Equal(wantTime) {
				t.Errorf("%s row %d: event_time %v, want %v", tbl.Name, i, m[store.ColEventTime], wantTime)
			}
			if _, ok := m[store.ColIngestedAt].(time.Time); !ok {
				t.Errorf("%s row %d: ingested_at %T %v, want a time", tbl.Name, i, m[store.ColIngestedAt], m[store.ColIngestedAt])
			}
			for _, c := range tbl.Columns {
				checkValue(t, tbl.Name+"."+c.Name, m[c.Name], valueFor(c, i))
			}
		}
	}

	// Columns absent from Fields are NULL.
	sparse := vigil.Event{ID: "sparse", Table: "process_creation", HostID: "h2", Time: base,
		Fields: map[string]any{"process_pid": int64(7)}}
	mustAppend(t, b, vigil.Batch{Events: []vigil.Event{sparse}})
	r := mustQuery(t, b, "SELECT process_pid, process_executable, user_id FROM process_creation WHERE event_id = ?", "sparse")
	if len(r.Rows) != 1 {
		t.Fatalf("sparse: %d rows", len(r.Rows))
	}
	checkValue(t, "process_pid", r.Rows[0][0], int64(7))
	if r.Rows[0][1] != nil || r.Rows[0][2] != nil {
		t.Errorf("absent fields: got %v, %v, want NULL", r.Rows[0][1], r.Rows[0][2])
	}
}

func checkValue(t *testing.T, what string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case time.Time:
		g, ok := got.(time.Time)
		if !ok || !g.Equal(w) {
			t.Errorf("%s: got %T %v, want %v", what, got, got, w)
		}
	case int64:
		g, err := Int(got)
		if err != nil || g != w {
			t.Errorf("%s: got %T %v, want %d", what, got, got, w)
		}
	default:
		if got != want {
			t.Errorf("%s: got %T %q, want %T %q", what, got, got, want, want)
		}
	}
}

func testResultsRoundTrip(t *testing.T, b Backend) {
	cols := map[string]string{"pid": "42", "path": "/usr/bin/ünï 'x\"", "empty": ""}
	rr := []vigil.ResultRow{
		{ID: "r1", HostID: "h1", Hostname: "web-1", Query: "pack_sec_processes", Action: "added", Time: base,
			Epoch: 3, Counter: 1<<40 + 7, Columns: cols},
		{ID: "r2", HostID: "h1", Hostname: "web-1", Query: "pack_sec_processes", Action: "removed", Time: base.Add(time.Second),
			Epoch: 3, Counter: 8, Columns: map[string]string{}},
	}
	mustAppend(t, b, vigil.Batch{Results: rr})
	rows := mustQuery(t, b, "SELECT event_id, hostname, query_name, action, epoch, counter, event_time, columns FROM "+schema.ResultsTable+
		" WHERE host_id = ? ORDER BY seq", "h1")
	if len(rows.Rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows.Rows))
	}
	for i, m := range rows.Maps() {
		checkValue(t, "event_id", m["event_id"], rr[i].ID)
		checkValue(t, "hostname", m["hostname"], rr[i].Hostname)
		checkValue(t, "query_name", m["query_name"], rr[i].Query)
		checkValue(t, "action", m["action"], rr[i].Action)
		checkValue(t, "epoch", m["epoch"], rr[i].Epoch)
		checkValue(t, "counter", m["counter"], rr[i].Counter)
		checkValue(t, "event_time", m["event_time"], rr[i].Time)
		s, ok := m["columns"].(string)
		if !ok {
			t.Fatalf("columns: %T", m["columns"])
		}
		got, err := store.DecodeColumns(s)
		if err != nil {
			t.Fatalf("columns %q: %v", s, err)
		}
		if len(got) != len(rr[i].Columns) {
			t.Errorf("columns %v, want %v", got, rr[i].Columns)
		}
		for k, v := range rr[i].Columns {
			if got[k] != v {
				t.Errorf("columns[%q] = %q, want %q", k, got[k], v)
			}
		}
	}
}

func testDedupeSameBatchTwice(t *testing.T, b Backend) {
	var batch vigil.Batch
	for i := range 20 {
		batch.Events = append(batch.Events, procEvent("h1", i, base.Add(time.Duration(i)*time.Minute)))
		batch.Results = append(batch.Results, vigil.ResultRow{ID: fmt.Sprintf("r%d", i), HostID: "h1", Query: "q",
			Action: "added", Time: base.Add(time.Duration(i) * time.Minute), Columns: map[string]string{"i": strconv.Itoa(i)}})
	}
	mustAppend(t, b, batch)
	mustAppend(t, b, batch)
	// A replay mixed with new rows keeps the new ones only once too.
	mixed := vigil.Batch{Events: append([]vigil.Event{procEvent("h1", 100, base)}, batch.Events[:5]...)}
	mustAppend(t, b, mixed)
	mustAppend(t, b, mixed)
	if n := count(t, b, "process_creation"); n != 21 {
		t.Errorf("process_creation: %d rows, want 21", n)
	}
	if n := count(t, b, schema.ResultsTable); n != 20 {
		t.Errorf("%s: %d rows, want 20", schema.ResultsTable, n)
	}
	r := mustQuery(t, b, "SELECT count(*) AS n FROM process_creation WHERE event_id = ?", "process_creation-h1-3")
	if n := mustInt(t, r.Rows[0][0]); n != 1 {
		t.Errorf("event process_creation-h1-3 stored %d times", n)
	}
}

func testDedupeWithinBatch(t *testing.T, b Backend) {
	e := procEvent("h1", 1, base)
	batch := vigil.Batch{Events: []vigil.Event{e, procEvent("h1", 2, base), e, e}}
	mustAppend(t, b, batch)
	if n := count(t, b, "process_creation"); n != 2 {
		t.Errorf("got %d rows, want 2", n)
	}
}

func testSeqStrictlyIncreasing(t *testing.T, b Backend) {
	var ids []string
	for round := range 4 {
		var batch vigil.Batch
		for i := range 25 {
			n := round*100 + i
			// Event times deliberately out of order: seq follows arrival, not time.
			e := procEvent("h1", n, base.Add(time.Duration((n*37)%101)*time.Second))
			batch.Events = append(batch.Events, e)
			ids = append(ids, e.ID)
		}
		// A replayed row must not get a new seq.
		if round > 0 {
			batch.Events = append(batch.Events, procEvent("h1", 0, base))
		}
		mustAppend(t, b, batch)
	}
	rows := mustQuery(t, b, "SELECT event_id, seq FROM process_creation ORDER BY seq")
	if len(rows.Rows) != len(ids) {
		t.Fatalf("got %d rows, want %d", len(rows.Rows), len(ids))
	}
	prev := int64(0)
	for i, r := range rows.Rows {
		seq := mustInt(t, r[1])
		if seq <= prev {
			t.Fatalf("row %d: seq %d after %d", i, seq, prev)
		}
		prev = seq
		if r[0] != ids[i] {
			t.Fatalf("row %d: seq order has %v, append order has %v", i, r[0], ids[i])
		}
	}
	// seq is per table: another table starts its own sequence, and does not
	// disturb this one.
	mustAppend(t, b, vigil.Batch{Results: []vigil.ResultRow{{ID: "x", HostID: "h1", Query: "q", Action: "added", Time: base}}})
	mustAppend(t, b, vigil.Batch{Events: []vigil.Event{procEvent("h1", 9999, base)}})
	r := mustQuery(t, b, "SELECT seq FROM process_creation WHERE event_id = ?", "process_creation-h1-9999")
	if len(r.Rows) != 1 || mustInt(t, r.Rows[0][0]) <= prev {
		t.Fatalf("seq after another table's append: %v, want > %d", r.Rows, prev)
	}
}

func testQueryByHostAndTime(t *testing.T, b Backend) {
	var batch vigil.Batch
	for _, h := range []string{"a", "b"} {
		for i := range 10 {
			batch.Events = append(batch.Events, procEvent(h, i, base.Add(time.Duration(i)*time.Hour)))
		}
	}
	mustAppend(t, b, batch)
	from, to := base.Add(3*time.Hour), base.Add(7*time.Hour)
	rows := mustQuery(t, b, "SELECT event_id, event_time FROM process_creation WHERE host_id = ? AND event_time >= ? AND event_time < ? ORDER BY event_time",
		"b", from, to)
	if len(rows.Rows) != 4 {
		t.Fatalf("got %d rows, want 4: %v", len(rows.Rows), rows.Rows)
	}
	for i, r := range rows.Rows {
		if want := fmt.Sprintf("process_creation-b-%d", i+3); r[0] != want {
			t.Errorf("row %d: %v, want %v", i, r[0], want)
		}
	}
	// Parameters are values, never SQL: a quote in a value matches nothing.
	rows = mustQuery(t, b, "SELECT count(*) AS n FROM process_creation WHERE host_id = ?", "b' OR '1'='1")
	if n := mustInt(t, rows.Rows[0][0]); n != 0 {
		t.Errorf("injected host id matched %d rows", n)
	}
	// Text values with quotes, backslashes and LIKE metacharacters compare exactly.
	want := valueFor(schema.Column{Name: "process_command_line", Type: schema.Text}, 4)
	rows = mustQuery(t, b, "SELECT count(*) AS n FROM process_creation WHERE process_command_line = ?", want)
	if n := mustInt(t, rows.Rows[0][0]); n != 2 {
		t.Errorf("command line %q matched %d rows, want 2", want, n)
	}
}

func testRetention(t *testing.T, b Backend) {
	var batch vigil.Batch
	for i := range 10 {
		at := base.Add(time.Duration(i) * time.Hour)
		batch.Events = append(batch.Events, procEvent("h1", i, at))
		batch.Results = append(batch.Results, vigil.ResultRow{ID: fmt.Sprintf("r%d", i), HostID: "h1", Query: "q", Action: "added", Time: at})
	}
	net, _ := schema.Lookup("network_connection")
	batch.Events = append(batch.Events, fullEvent(net, "h1", 0, base))
	mustAppend(t, b, batch)

	n, err := b.DeleteBefore(ctxT(t), base.Add(4*time.Hour))
	if err != nil {
		t.Fatalf("DeleteBefore: %v", err)
	}
	if n != 4+4+1 {
		t.Errorf("DeleteBefore deleted %d rows, want 9", n)
	}
	if c := count(t, b, "process_creation"); c != 6 {
		t.Errorf("process_creation: %d rows left, want 6", c)
	}
	if c := count(t, b, schema.ResultsTable); c != 6 {
		t.Errorf("%s: %d rows left, want 6", schema.ResultsTable, c)
	}
	if c := count(t, b, "network_connection"); c != 0 {
		t.Errorf("network_connection: %d rows left, want 0", c)
	}
	r := mustQuery(t, b, "SELECT count(*) AS n FROM process_creation WHERE event_time < ?", base.Add(4*time.Hour))
	if c := mustInt(t, r.Rows[0][0]); c != 0 {
		t.Errorf("%d old rows survived", c)
	}
	// Appends keep working after a delete and seq keeps increasing.
	mustAppend(t, b, vigil.Batch{Events: []vigil.Event{procEvent("h1", 50, base.Add(5*time.Hour))}})
	r = mustQuery(t, b, "SELECT event_id FROM process_creation ORDER BY seq DESC LIMIT 1")
	if len(r.Rows) != 1 || r.Rows[0][0] != "process_creation-h1-50" {
		t.Errorf("newest row after retention: %v", r.Rows)
	}
}

// testConcurrentReaders checks the watermark property while a writer
// appends: once a reader has seen seq M, the set of rows with seq <= M
// never changes (no row with a lower seq appears later).
func testConcurrentReaders(t *testing.T, b Backend) {
	const batches, perBatch, readers = 30, 40, 3
	ctx := ctxT(t)
	done := make(chan struct{})
	errc := make(chan error, readers+1)
	var reads sync.WaitGroup
	var readCount [readers]int
	for r := range readers {
		reads.Add(1)
		go func() {
			defer reads.Done()
			var seenMax, seenCount int64
			for {
				select {
				case <-done:
					return
				default:
				}
				if seenMax > 0 {
					rows, err := b.Query(ctx, "SELECT count(*) AS n FROM process_creation WHERE seq <= ?", seenMax)
					if err != nil {
						errc <- fmt.Errorf("reader: %w", err)
						return
					}
					if n, _ := Int(rows.Rows[0][0]); n != seenCount {
						errc <- fmt.Errorf("reader: %d rows with seq <= %d, earlier %d", n, seenMax, seenCount)
						return
					}
				}
				rows, err := b.Query(ctx, "SELECT count(*) AS n, max(seq) AS m FROM process_creation")
				if err != nil {
					errc <- fmt.Errorf("reader: %w", err)
					return
				}
				n, _ := Int(rows.Rows[0][0])
				m, _ := Int(rows.Rows[0][1])
				if m < seenMax || n < seenCount {
					errc <- fmt.Errorf("reader: went backwards: max seq %d count %d after %d, %d", m, n, seenMax, seenCount)
					return
				}
				seenMax, seenCount = m, n
				readCount[r]++
			}
		}()
	}
	go func() {
		defer close(done)
		for i := range batches {
			var batch vigil.Batch
			for j := range perBatch {
				batch.Events = append(batch.Events, procEvent("h1", i*perBatch+j, base.Add(time.Duration(j)*time.Second)))
			}
			if err := b.Append(ctx, batch); err != nil {
				errc <- fmt.Errorf("writer: %w", err)
				return
			}
		}
	}()
	reads.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := count(t, b, "process_creation"); n != batches*perBatch {
		t.Errorf("got %d rows, want %d", n, batches*perBatch)
	}
	for r, n := range readCount {
		if n == 0 {
			t.Errorf("reader %d never completed a read during the writes", r)
		}
	}
}

func testInvalidBatchRejectedWhole(t *testing.T, b Backend) {
	good := procEvent("h1", 1, base)
	cases := map[string]vigil.Event{
		"unknown table":  {ID: "x1", Table: "no_such_table", HostID: "h1", Time: base},
		"unknown column": {ID: "x2", Table: "process_creation", HostID: "h1", Time: base, Fields: map[string]any{"no_such_column": "v"}},
		"wrong type":     {ID: "x3", Table: "process_creation", HostID: "h1", Time: base, Fields: map[string]any{"process_pid": []int{1}}},
		"empty id":       {ID: "", Table: "process_creation", HostID: "h1", Time: base},
	}
	for name, bad := range cases {
		err := b.Append(ctxT(t), vigil.Batch{Events: []vigil.Event{good, bad}})
		if !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("%s: Append error %v, want one wrapping vigil.ErrInvalid", name, err)
		}
	}
	if n := count(t, b, "process_creation"); n != 0 {
		t.Errorf("%d rows stored from rejected batches, want 0", n)
	}
}

func testEmptyBatch(t *testing.T, b Backend) {
	mustAppend(t, b, vigil.Batch{})
	if n := count(t, b, "process_creation"); n != 0 {
		t.Errorf("got %d rows", n)
	}
}

func testStats(t *testing.T, b Backend) {
	mustAppend(t, b, vigil.Batch{
		Events:  []vigil.Event{procEvent("h1", 1, base), procEvent("h1", 2, base)},
		Results: []vigil.ResultRow{{ID: "r", HostID: "h1", Query: "q", Action: "snapshot", Time: base}},
	})
	st, err := b.Stats(ctxT(t))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Rows["process_creation"] != 2 || st.Rows[schema.ResultsTable] != 1 || st.Rows["file_event"] != 0 {
		t.Errorf("Stats rows %v", st.Rows)
	}
	for _, tbl := range schema.Tables() {
		if _, ok := st.Rows[tbl.Name]; !ok {
			t.Errorf("Stats has no entry for %s", tbl.Name)
		}
	}
	if st.SizeBytes <= 0 {
		t.Errorf("Stats size %d", st.SizeBytes)
	}
}

func testBadQuery(t *testing.T, b Backend) {
	if _, err := b.Query(ctxT(t), "SELECT no_such_column FROM process_creation"); err == nil {
		t.Error("query of an unknown column: no error")
	}
	if _, err := b.Query(ctxT(t), "SELEC 1"); err == nil {
		t.Error("syntax error: no error")
	}
}

// Events builds n process_creation events of host, numbered from from,
// start plus i steps apart, for backends' own tests.
func Events(host string, from, n int, start time.Time, step time.Duration) vigil.Batch {
	var b vigil.Batch
	for i := from; i < from+n; i++ {
		b.Events = append(b.Events, vigil.Event{
			ID: fmt.Sprintf("%s-%d", host, i), Table: "process_creation", HostID: host,
			Time:   start.Add(time.Duration(i) * step),
			Fields: map[string]any{"process_pid": int64(i), "process_executable": "/bin/sh", "hostname": host},
		})
	}
	return b
}
