package ingest_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	duckdbdrv "github.com/duckdb/duckdb-go/v2"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/store/duckdb"
)

const benchRows = 100_000

// benchLines returns n process_events lines in osquery's event format,
// distinct for each round.
func benchLines(round, n int) []json.RawMessage {
	lines := make([]json.RawMessage, n)
	for i := range lines {
		lines[i] = procLine("pack_ir_process_events", round, i, fmt.Sprintf("/usr/bin/python3 -c 'import os; os.system(\"id %d\")'", i))
	}
	return lines
}

// BenchmarkIngest100k: decode + normalise + append a 100k-line batch of
// process_events lines into DuckDB (100k raw result rows and 100k events).
func BenchmarkIngest100k(b *testing.B) {
	ctx := context.Background()
	var cpu cpuClock
	defer cpu.report(b, benchRows)
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		s := openStore(b)
		ing := ingest.New(ingest.Options{Appender: s})
		lines := benchLines(n, benchRows)
		cpu.start()
		b.StartTimer()
		if err := ing.Log(ctx, host, "result", lines); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu.stop()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode100k: decode + normalise only, no store.
func BenchmarkDecode100k(b *testing.B) {
	ing := ingest.New(ingest.Options{})
	lines := benchLines(0, benchRows)
	for b.Loop() {
		if _, err := ing.Decode(host, "result", lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawAppender100k: the same rows (100k raw result rows and 100k
// events, already decoded) straight through the DuckDB Appender into the
// same tables, with no dedupe and no seq bookkeeping, into a fresh file
// per op whose closing checkpoint is not timed: the floor of a single
// batch.
func BenchmarkRawAppender100k(b *testing.B) {
	ctx := context.Background()
	var cpu cpuClock
	defer cpu.report(b, benchRows)
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		conn, done := openRaw(b)
		rawOp(ctx, b, &cpu, conn, n)
		done()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawAppenderSteady100k: as BenchmarkRawAppender100k, but every
// op appends its 100k events and rows to one file, as a running server
// does, so DuckDB's checkpoints (at the store's threshold) fall inside
// the timed part as they do in the end-to-end benchmarks
// (cmd/vigil BenchmarkIngestDuckDB). This is the raw rate those compare
// with.
func BenchmarkRawAppenderSteady100k(b *testing.B) {
	ctx := context.Background()
	var cpu cpuClock
	defer cpu.report(b, benchRows)
	conn, done := openRaw(b)
	defer done()
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		rawOp(ctx, b, &cpu, conn, n)
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// rawOp decodes round's lines untimed, then times their raw append; the
// timer is stopped on entry and on return.
func rawOp(ctx context.Context, b *testing.B, cpu *cpuClock, conn *sql.Conn, round int) {
	batch := decodeBench(b, round)
	cpu.start()
	b.StartTimer()
	rawAppend(ctx, b, conn, batch)
	b.StopTimer()
	cpu.stop()
}

func decodeBench(b *testing.B, round int) vigil.Batch {
	batch, err := ingest.New(ingest.Options{}).Decode(host, "result", benchLines(round, benchRows))
	if err != nil {
		b.Fatal(err)
	}
	return batch
}

// openRaw opens a new DuckDB file holding the schema's tables, with the
// store's settings, so that the difference measured is the ingest path's
// own work.
func openRaw(b *testing.B) (*sql.Conn, func()) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "raw.duckdb")
	s, err := duckdb.Open(ctx, duckdb.Options{Path: path}) // creates the tables
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("duckdb", path+"?memory_limit="+duckdb.DefaultMemoryLimit+"&checkpoint_threshold="+duckdb.DefaultCheckpointThreshold)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return conn, func() { conn.Close(); db.Close() }
}

// rawAppend appends batch's events and result rows with one Appender per
// table.
func rawAppend(ctx context.Context, b *testing.B, conn *sql.Conn, batch vigil.Batch) {
	pc, _ := schema.Lookup("process_creation")
	tables := []struct {
		name string
		cols []schema.Column
	}{
		{pc.Name, pc.AllColumns()},
		{schema.ResultsTable, append(append([]schema.Column{}, schema.Common...), schema.ResultsColumns...)},
	}
	now := time.Now().UTC()
	err := conn.Raw(func(dc any) error {
		for _, t := range tables {
			a, err := duckdbdrv.NewAppenderFromConn(dc.(driver.Conn), "", t.name)
			if err != nil {
				return err
			}
			row := make([]driver.Value, len(t.cols))
			if t.name == schema.ResultsTable {
				for i, r := range batch.Results {
					rawResultRow(row, t.cols, r, now, int64(i+1))
					if err := a.AppendRow(row...); err != nil {
						return err
					}
				}
			} else {
				for i, e := range batch.Events {
					rawEventRow(row, t.cols, e, now, int64(i+1))
					if err := a.AppendRow(row...); err != nil {
						return err
					}
				}
			}
			if err := a.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func rawEventRow(row []driver.Value, cols []schema.Column, e vigil.Event, now time.Time, seq int64) {
	for i, c := range cols {
		switch c.Name {
		case store.ColEventID:
			row[i] = e.ID
		case store.ColHostID:
			row[i] = e.HostID
		case store.ColEventTime:
			row[i] = e.Time
		case store.ColIngestedAt:
			row[i] = now
		case store.ColSeq:
			row[i] = seq
		default:
			row[i] = e.Fields[c.Name]
		}
	}
}

func rawResultRow(row []driver.Value, cols []schema.Column, r vigil.ResultRow, now time.Time, seq int64) {
	for i, c := range cols {
		switch c.Name {
		case store.ColEventID:
			row[i] = r.ID
		case store.ColHostID:
			row[i] = r.HostID
		case store.ColEventTime:
			row[i] = r.Time
		case store.ColIngestedAt:
			row[i] = now
		case store.ColSeq:
			row[i] = seq
		case "query_name":
			row[i] = r.Query
		case "action":
			row[i] = r.Action
		case "columns":
			row[i] = store.EncodeColumns(r.Columns)
		default:
			row[i] = nil
		}
	}
}

// BenchmarkLogWAL: many hosts sending small requests (50 lines) through
// the WAL (group commit) with the drainer appending to DuckDB; the time
// includes draining everything into the store.
func BenchmarkLogWAL(b *testing.B) {
	s := openStore(b)
	w, err := wal.Open(wal.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ing := ingest.New(ingest.Options{Appender: s, WAL: w})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ing.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	const perReq = 50
	var round atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := int(round.Add(1))
			lines := make([]json.RawMessage, perReq)
			for i := range lines {
				lines[i] = procLine("process_events", r, i, "x")
			}
			if err := ing.Log(ctx, host, "result", lines); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := ing.WaitDrained(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := w.Stats()
	b.ReportMetric(float64(b.N*perReq)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "requests/fsync")
}

// cpuClock adds up the process's CPU time (user + system) over the timed
// parts of a benchmark. The machine these run on is shared: wall-clock
// rates move with the neighbours' load, CPU seconds per event much less.
type cpuClock struct {
	total, at time.Duration
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.at = cpuNow() }
func (c *cpuClock) stop()  { c.total += cpuNow() - c.at }

// report adds events per CPU-second; call it deferred, after b.Loop.
func (c *cpuClock) report(b *testing.B, perOp int) {
	if c.total > 0 {
		b.ReportMetric(float64(perOp)*float64(b.N)/c.total.Seconds(), "events/cpu-s")
	}
}
