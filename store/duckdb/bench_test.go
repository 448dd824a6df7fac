package duckdb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/vigilhq/vigil"
)

// BenchmarkAppend100k appends 100k process_creation events into a fresh
// store: staging through the Appender, dedupe and seq assignment.
func BenchmarkAppend100k(b *testing.B) {
	ctx := context.Background()
	batch := events("h", 0, 100_000)
	for b.Loop() {
		b.StopTimer()
		s := open(b, duckdbOptions())
		b.StartTimer()
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100_000*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAppendReplay100k appends a 100k batch already in the store
// (a replay), which only runs the duplicate check.
func BenchmarkAppendReplay100k(b *testing.B) {
	ctx := context.Background()
	batch := events("h", 0, 100_000)
	s := open(b, duckdbOptions())
	if err := s.Append(ctx, batch); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100_000*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAppendMixed100k appends what ingest produces for 100k
// process_events lines: 100k events and 100k raw result rows.
func BenchmarkAppendMixed100k(b *testing.B) {
	ctx := context.Background()
	batch := events("h", 0, 100_000)
	for i, e := range batch.Events {
		cols := map[string]string{"pid": fmt.Sprint(i), "path": "/usr/bin/curl", "cmdline": "curl -s http://example.com/some/long/path?x=1",
			"parent": "1", "uid": "1000", "euid": "1000", "auid": "1000", "gid": "1000", "egid": "1000", "cwd": "/home/u", "time": "1767225600"}
		batch.Results = append(batch.Results, vigil.ResultRow{ID: e.ID, HostID: e.HostID, Query: "q", Action: "added", Time: e.Time, Columns: cols})
	}
	for b.Loop() {
		b.StopTimer()
		s := open(b, duckdbOptions())
		b.StartTimer()
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100_000*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
