package duckdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Per-query result views (see store.ResultViews): results_<query> selects
// the common columns of query_results and one VARCHAR column per result
// column ("columns"->>'pid'), for one query name. They are created after
// the append that brings a query's first rows or a new column name, on the
// writer connection; a failure is logged and retried with the next append.
// schema.ResultViewsTable keeps what exists across restarts, and a mark in
// vigil_meta (viewsDueKey) the rows whose views a crash may have left
// unmade.

// initViews creates the catalogue, loads it and, when the file comes from
// a schema version without views, creates the views of the rows it holds.
// Called from init with the writer connection.
func (s *Store) initViews(ctx context.Context, fromVersion int) error {
	if _, err := s.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+quoteIdent(schema.ResultViewsTable)+
		` (view_name VARCHAR PRIMARY KEY, query_name VARCHAR NOT NULL, "columns" VARCHAR NOT NULL)`); err != nil {
		return fmt.Errorf("creating %s: %w", schema.ResultViewsTable, err)
	}
	rows, err := s.conn.QueryContext(ctx, `SELECT view_name, query_name, "columns" FROM `+quoteIdent(schema.ResultViewsTable))
	if err != nil {
		return fmt.Errorf("reading %s: %w", schema.ResultViewsTable, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, query, cols string
		if err := rows.Scan(&name, &query, &cols); err != nil {
			return fmt.Errorf("reading %s: %w", schema.ResultViewsTable, err)
		}
		var keys []string
		if err := json.Unmarshal([]byte(cols), &keys); err != nil {
			s.log.Warn("unreadable result view entry: recreating the view when its query's rows come", "view", name, "err", err)
			continue
		}
		s.views.Load(name, query, keys)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", schema.ResultViewsTable, err)
	}
	if fromVersion == 0 || fromVersion >= 2 {
		return s.catchUpViews(ctx)
	}
	// A store from before views: one pass over the results table finds
	// every query and column name.
	n, _, err := s.seedViews(ctx, `SELECT DISTINCT query_name, unnest(json_keys("columns")) FROM `+quoteIdent(schema.ResultsTable))
	if err != nil {
		return err
	}
	s.log.Info("created result views of existing rows", "queries", n)
	return nil
}

// createViews creates or replaces views on the writer connection; s.mu
// is held (or the store is opening). Failures are logged and counted: the
// view comes back from Observe with the next rows of its query.
func (s *Store) createViews(ctx context.Context, views []store.ResultView) (failed int) {
	return s.views.CreateEach(ctx, views, s.log, s.createView)
}

// viewsDueKey is the vigil_meta key of the first query_results seq whose
// views may be missing: set in the transaction of an append that calls
// for new views, removed once they all exist. A crash in between leaves
// it for catchUpViews.
const viewsDueKey = "views_due_from_seq"

// viewsDone removes the views-due mark; on failure it stays and the next
// open looks again (at a few rows more than needed).
func (s *Store) viewsDone(ctx context.Context) {
	if _, err := s.conn.ExecContext(ctx, `DELETE FROM `+metaTable+` WHERE key = ?`, viewsDueKey); err != nil {
		s.log.Warn("clearing the result views mark", "err", err)
	}
}

// catchUpViews makes the views of the rows from the views-due mark on, if
// there is one: the views an append called for before a crash took the
// process. Only those rows are read.
func (s *Store) catchUpViews(ctx context.Context) error {
	var from sql.NullString
	err := s.conn.QueryRowContext(ctx, `SELECT value FROM `+metaTable+` WHERE key = ?`, viewsDueKey).Scan(&from)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the result views mark: %w", err)
	}
	seq, err := strconv.ParseInt(from.String, 10, 64)
	if err != nil {
		s.log.Warn("unreadable result views mark: looking at every row", "value", from.String)
		seq = 0
	}
	n, failed, err := s.seedViews(ctx, `SELECT DISTINCT query_name, unnest(json_keys("columns")) FROM `+
		quoteIdent(schema.ResultsTable)+` WHERE seq >= ?`, seq)
	if err != nil {
		return err
	}
	s.log.Info("made the result views an interrupted append called for", "queries", n, "from_seq", seq, "failed", failed)
	if failed == 0 {
		s.viewsDone(ctx)
	}
	return nil
}

// seedViews runs q, which yields (query name, column name) pairs, and
// creates the views they call for.
func (s *Store) seedViews(ctx context.Context, q string, args ...any) (queries, failed int, err error) {
	rows, err := s.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
	}
	byQuery := map[string][]string{}
	var order []string
	for rows.Next() {
		var q, k string
		if err := rows.Scan(&q, &k); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
		}
		if byQuery[q] == nil {
			order = append(order, q)
		}
		byQuery[q] = append(byQuery[q], k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
	}
	for _, q := range order {
		failed += s.createViews(ctx, s.views.Seed(q, byQuery[q]))
	}
	return len(order), failed, nil
}

func (s *Store) createView(ctx context.Context, rv store.ResultView) (err error) {
	stmt, err := viewSQL(rv)
	if err != nil {
		return err
	}
	cat, err := rv.KeysJSON()
	if err != nil {
		return err
	}
	if _, err := s.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
		return err
	}
	if _, err := s.conn.ExecContext(ctx, `INSERT OR REPLACE INTO `+quoteIdent(schema.ResultViewsTable)+` VALUES (?, ?, ?)`,
		rv.Name, rv.Query, cat); err != nil {
		return err
	}
	_, err = s.conn.ExecContext(ctx, "COMMIT")
	return err
}

// viewSQL renders the view. The view name is [a-z0-9_] and column names
// are plain identifiers (store.ResultViews guarantees both); the query
// name, the only untrusted text, and the JSON keys are literals from
// store.DuckDBString.
func viewSQL(rv store.ResultView) (string, error) {
	if !store.ValidViewName(rv.Name) {
		return "", fmt.Errorf("view name %q is not [a-z0-9_]", rv.Name)
	}
	query, ok := store.DuckDBString(rv.Query)
	if !ok {
		return "", fmt.Errorf("query name %q cannot be a DuckDB literal", rv.Query)
	}
	var b strings.Builder
	b.WriteString("CREATE OR REPLACE VIEW " + quoteIdent(rv.Name) + " AS SELECT ")
	for i, c := range store.ResultViewFixedColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	for _, c := range rv.Columns {
		key, ok := store.DuckDBString(c.Key)
		if !store.ValidResultColumn(c.Key) || !store.ValidResultColumn(c.Name) || !ok {
			return "", fmt.Errorf("column %q (%q) is not an identifier", c.Name, c.Key)
		}
		b.WriteString(`, "columns"->>` + key + " AS " + quoteIdent(c.Name))
	}
	b.WriteString(" FROM " + quoteIdent(schema.ResultsTable) + ` WHERE "query_name" = ` + query)
	return b.String(), nil
}
