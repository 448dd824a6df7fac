// Package duckdbtest gives detect's tests a real DuckDB database in a
// temporary directory, with event tables created from the schema and a
// store.Querier over database/sql. Only _test.go files import it, so the
// driver never reaches detect or detect/sigma themselves.
package duckdbtest

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2" // the driver under test

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// DB is a DuckDB database file in t.TempDir().
type DB struct {
	SQL *sql.DB
	// Limit truncates query results like a store's row limit does; 0
	// means store.DefaultRowLimit.
	Limit int

	mu      sync.Mutex
	Queries []string // every query run through Query, for assertions
	seq     map[string]int64
}

var _ store.Querier = (*DB)(nil)

// Open creates the database; it is closed when the test ends.
func Open(t testing.TB) *DB {
	t.Helper()
	db, err := sql.Open("duckdb", filepath.Join(t.TempDir(), "events.duckdb"))
	if err != nil {
		t.Fatalf("opening duckdb: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return &DB{SQL: db, seq: map[string]int64{}}
}

// CreateTable creates an event table with the schema's columns.
func (d *DB) CreateTable(t testing.TB, tbl schema.Table) {
	t.Helper()
	cols := make([]string, 0, len(tbl.AllColumns()))
	for _, c := range tbl.AllColumns() {
		cols = append(cols, `"`+c.Name+`" `+string(c.Type))
	}
	if _, err := d.SQL.Exec(`CREATE TABLE "` + tbl.Name + `" (` + strings.Join(cols, ", ") + `)`); err != nil {
		t.Fatalf("creating table %s: %v", tbl.Name, err)
	}
}

// Insert adds one row with the next seq of the table and returns that seq.
func (d *DB) Insert(t testing.TB, table string, row map[string]any) int64 {
	t.Helper()
	d.mu.Lock()
	d.seq[table]++
	seq := d.seq[table]
	d.mu.Unlock()
	names := []string{`"seq"`}
	marks := []string{"?"}
	args := []any{seq}
	for k, v := range row {
		names = append(names, `"`+k+`"`)
		marks = append(marks, "?")
		args = append(args, v)
	}
	q := `INSERT INTO "` + table + `" (` + strings.Join(names, ", ") + `) VALUES (` + strings.Join(marks, ", ") + `)`
	if _, err := d.SQL.Exec(q, args...); err != nil {
		t.Fatalf("inserting into %s: %v", table, err)
	}
	return seq
}

// Exec runs a statement (sigma.TestDB).
func (d *DB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := d.SQL.ExecContext(ctx, query, args...)
	return err
}

// Query implements store.Querier.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*store.Rows, error) {
	d.mu.Lock()
	d.Queries = append(d.Queries, query)
	limit := d.Limit
	d.mu.Unlock()
	if limit <= 0 {
		limit = store.DefaultRowLimit
	}
	rows, err := d.SQL.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := &store.Rows{Columns: cols}
	for rows.Next() {
		if len(out.Rows) == limit {
			out.Truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out.Rows = append(out.Rows, vals)
	}
	return out, rows.Err()
}
