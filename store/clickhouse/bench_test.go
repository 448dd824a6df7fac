package clickhouse_test

import (
	"context"
	"testing"

	"github.com/vigilhq/vigil/store/clickhouse"
)

// BenchmarkAppend100k appends 100k process_creation events (TSV over
// HTTP, with the duplicate check) into a fresh database.
func BenchmarkAppend100k(b *testing.B) {
	ctx := context.Background()
	batch := events("h", 0, 100_000)
	for b.Loop() {
		b.StopTimer()
		s := open(b, clickhouse.Options{})
		b.StartTimer()
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100_000*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAppendReplay100k appends a batch the store already holds.
func BenchmarkAppendReplay100k(b *testing.B) {
	ctx := context.Background()
	batch := events("h", 0, 100_000)
	s := open(b, clickhouse.Options{})
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
