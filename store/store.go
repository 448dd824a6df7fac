// Package store defines the contracts between ingest, detection and the
// people API on one side and the event stores (store/duckdb,
// store/clickhouse) on the other. It holds interfaces and shared types only;
// storetest/ is the conformance suite every backend passes.
package store

import (
	"context"
	"time"

	"github.com/vigilhq/vigil"
)

// Appender writes batches. Append is idempotent by event id: appending a
// batch twice (a replay after a crash) leaves one copy of each row. When
// Append returns nil the rows are durable in the store.
type Appender interface {
	Append(ctx context.Context, b vigil.Batch) error
}

// Querier runs read-only SQL in the store's own dialect. Values in Rows are
// Go values as the driver returns them (string, int64, float64, bool,
// time.Time, nil).
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (*Rows, error)
}

// Dialect names the SQL dialect of a store, as detect/sigma knows them.
type Dialect string

// Dialects.
const (
	DuckDB     Dialect = "duckdb"
	ClickHouse Dialect = "clickhouse"
)

// Rows is a fully read result set. Stores bound the number of rows a query
// may return (see Limit) so that a person's query cannot exhaust memory.
type Rows struct {
	Columns   []string
	Rows      [][]any
	Truncated bool // more rows existed than the limit allowed
}

// Maps returns the rows as column->value maps.
func (r *Rows) Maps() []map[string]any {
	out := make([]map[string]any, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]any, len(r.Columns))
		for j, c := range r.Columns {
			m[c] = row[j]
		}
		out[i] = m
	}
	return out
}

// DefaultRowLimit bounds Query results unless a backend is told otherwise.
const DefaultRowLimit = 100_000

// Common columns present in every event table of the schema, in this order,
// before the table's own columns. seq is assigned by the store on insert,
// strictly increasing within a table, and is what detection watermarks
// follow.
const (
	ColEventID    = "event_id"
	ColHostID     = "host_id"
	ColHostname   = "hostname"
	ColEventTime  = "event_time"
	ColIngestedAt = "ingested_at"
	ColSeq        = "seq"
)

// Stats describes a store for metrics and the console.
type Stats struct {
	SizeBytes   int64            // on-disk size
	Rows        map[string]int64 // table -> row count
	ResultViews ResultViewStats  // per-query result views
}

// Retainer deletes events older than a cutoff.
type Retainer interface {
	DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error)
}
