package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// Query runs one read-only statement (a SELECT, including WITH, VALUES,
// DESCRIBE, SHOW TABLES and SUMMARIZE forms) and returns at most the
// store's RowLimit rows, with Truncated set when there were more. Anything
// else (writes, DDL, SET, ATTACH, several statements) is refused with
// vigil.ErrInvalid. File and network access from SQL is disabled for the
// whole database at Open. Query runs concurrently with appends and sees
// only committed batches.
func (s *Store) Query(ctx context.Context, q string, args ...any) (*store.Rows, error) {
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	defer c.Close()
	if err := checkReadOnly(ctx, c, q); err != nil {
		return nil, err
	}
	// DuckDB materialises a result before the driver reads it, so the limit
	// has to be inside the statement for it to bound memory. The newline
	// ends a trailing line comment of q.
	body := strings.TrimRight(strings.TrimSpace(q), ";")
	wrapped := "SELECT * FROM (\n" + body + "\n) AS vigil_q LIMIT " + strconv.Itoa(s.rowLimit+1)
	rows, err := c.QueryContext(ctx, wrapped, args...)
	if err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	defer rows.Close()
	return readRows(rows, s.rowLimit)
}

// checkReadOnly prepares q on its own and accepts only a single SELECT.
func checkReadOnly(ctx context.Context, c *sql.Conn, q string) error {
	return c.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("duckdb: query: driver connection %T cannot prepare", dc)
		}
		st, err := pc.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("duckdb: query: %w", err)
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return fmt.Errorf("duckdb: query: statement %T has no type", st)
		}
		typ, err := ds.StatementType()
		if err != nil {
			return fmt.Errorf("duckdb: query: %w", err)
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT {
			return fmt.Errorf("duckdb: query: only read-only SELECT statements may run here: %w", vigil.ErrInvalid)
		}
		return nil
	})
}

func readRows(rows *sql.Rows, limit int) (*store.Rows, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	out := &store.Rows{Columns: cols}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if len(out.Rows) == limit {
			out.Truncated = true
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("duckdb: query: reading row %d: %w", len(out.Rows), err)
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = normalize(v)
		}
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("duckdb: query: %w", err)
	}
	return out, nil
}

// normalize turns a driver value into one of the types store.Rows
// promises: string, int64, float64, bool, time.Time or nil. Nested values
// (lists, structs, maps) become JSON text.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, string, int64, float64, bool:
		return x
	case time.Time:
		return x.UTC()
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return strconv.FormatUint(x, 10)
	case float32:
		return float64(x)
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		return x.String()
	case duckdb.Decimal:
		return x.Float64()
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}
