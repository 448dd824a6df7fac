package duckdb_test

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

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
	batch := mixed(events("h", 0, 100_000))
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

// BenchmarkAppendBatches appends 300k events and their 300k raw result
// rows in batches of 8,500 of each, the size the ingest drainer appends
// (4 MiB of WAL), into one store: the steady state, where DuckDB
// checkpoints along the way. Compare CheckpointThreshold values with
// VIGIL_BENCH_CHECKPOINT=16MB.
func BenchmarkAppendBatches(b *testing.B) {
	ctx := context.Background()
	const total, size = 300_000, 8_500
	batch := mixed(events("h", 0, total))
	opts := duckdbOptions()
	opts.CheckpointThreshold = os.Getenv("VIGIL_BENCH_CHECKPOINT")
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		s := open(b, opts)
		c0 := cpuNow()
		b.StartTimer()
		for lo := 0; lo < total; lo += size {
			hi := min(lo+size, total)
			if err := s.Append(ctx, vigil.Batch{Events: batch.Events[lo:hi], Results: batch.Results[lo:hi]}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		cpu += cpuNow() - c0
		b.StartTimer()
	}
	b.ReportMetric(total*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(total*float64(b.N)/cpu.Seconds(), "events/cpu-s")
}

// mixed adds to b's events the raw result rows ingest makes with them.
func mixed(b vigil.Batch) vigil.Batch {
	for i, e := range b.Events {
		cols := map[string]string{"pid": fmt.Sprint(i), "path": "/usr/bin/curl", "cmdline": "curl -s http://example.com/some/long/path?x=1",
			"parent": "1", "uid": "1000", "euid": "1000", "auid": "1000", "gid": "1000", "egid": "1000", "cwd": "/home/u", "time": "1767225600"}
		b.Results = append(b.Results, vigil.ResultRow{ID: e.ID, HostID: e.HostID, Query: "q", Action: "added", Time: e.Time, Columns: cols})
	}
	return b
}

// cpuNow is the process's CPU time (user + system): the machine is
// shared, so wall-clock rates move with the neighbours' load.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
