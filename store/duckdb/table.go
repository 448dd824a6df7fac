package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/vigilhq/vigil/schema"
)

// idsTable is the temporary table on the writer connection that holds the
// ids of the batch being appended, for the duplicate check.
const idsTable = "_vigil_batch_ids"

// table is one table of the store with the SQL that writes it.
type table struct {
	name   string
	quoted string
	cols   []schema.Column // all columns, schema order
	index  map[string]int  // column name -> position in cols
	common []bool          // cols[i] is one of schema.Common
	dupes  string          // ids of the staged batch the table holds; params: time lo, hi
	dupesN string          // as dupes, for batches with rows without a time
	seq    int64           // highest seq committed; guarded by Store.mu
}

func newTable(name string, cols []schema.Column) *table {
	t := &table{name: name, quoted: quoteIdent(name), cols: cols, index: map[string]int{}, common: make([]bool, len(cols))}
	isCommon := map[string]bool{}
	for _, c := range schema.Common {
		isCommon[c.Name] = true
	}
	for i, c := range cols {
		t.index[c.Name] = i
		t.common[i] = isCommon[c.Name]
	}
	return t
}

// ensure creates the table or adds the columns a newer schema has.
func (t *table) ensure(ctx context.Context, conn *sql.Conn) error {
	defs := make([]string, len(t.cols))
	for i, c := range t.cols {
		defs[i] = quoteIdent(c.Name) + " " + string(c.Type)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.quoted+` (`+strings.Join(defs, ", ")+`)`); err != nil {
		return fmt.Errorf("creating %s: %w", t.name, err)
	}
	have := map[string]string{}
	rows, err := conn.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?`, t.name)
	if err != nil {
		return fmt.Errorf("reading columns of %s: %w", t.name, err)
	}
	for rows.Next() {
		var n, typ string
		if err := rows.Scan(&n, &typ); err != nil {
			rows.Close()
			return fmt.Errorf("reading columns of %s: %w", t.name, err)
		}
		have[n] = typ
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading columns of %s: %w", t.name, err)
	}
	for _, c := range t.cols {
		typ, ok := have[c.Name]
		if !ok {
			if _, err := conn.ExecContext(ctx, `ALTER TABLE `+t.quoted+` ADD COLUMN `+quoteIdent(c.Name)+` `+string(c.Type)); err != nil {
				return fmt.Errorf("adding column %s.%s: %w", t.name, c.Name, err)
			}
			continue
		}
		if !strings.EqualFold(typ, string(c.Type)) {
			return fmt.Errorf("column %s.%s is %s in the file, %s in the schema: a migration is missing", t.name, c.Name, typ, c.Type)
		}
	}
	// The highest seq is the table's, or the one recorded before retention
	// deleted the newest rows.
	err = conn.QueryRowContext(ctx, `SELECT greatest((SELECT coalesce(max(seq), 0) FROM `+t.quoted+`),
		(SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM `+metaTable+` WHERE key = ?))`, seqKey(t.name)).Scan(&t.seq)
	if err != nil {
		return fmt.Errorf("reading max seq of %s: %w", t.name, err)
	}
	return nil
}

// prepare builds the duplicate check. Ids are derived from the event's
// content including its time, so the check only has to look at rows in the
// batch's time range, which DuckDB's zone maps prune to a few row groups
// instead of the whole table.
func (t *table) prepare() {
	build := func(timeCond string) string {
		return `SELECT DISTINCT x."event_id" FROM ` + t.quoted + ` x
JOIN temp.main.` + quoteIdent(idsTable) + ` b ON x."event_id" = b."event_id"
WHERE ` + timeCond
	}
	t.dupes = build(`x."event_time" BETWEEN CAST(? AS TIMESTAMP) AND CAST(? AS TIMESTAMP)`)
	t.dupesN = build(`(x."event_time" BETWEEN CAST(? AS TIMESTAMP) AND CAST(? AS TIMESTAMP) OR x."event_time" IS NULL)`)
}
