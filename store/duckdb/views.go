package duckdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Per-query result views (see store.ResultViews): results_<query> selects
// the common columns of query_results and one VARCHAR column per result
// column ("columns"->>'pid'), for one query name. They are created after
// the append that brings a query's first rows or a new column name, on the
// writer connection; a failure is logged and retried with the next append.
// schema.ResultViewsTable keeps what exists across restarts.

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
		return nil
	}
	// A store from before views: one pass over the results table finds
	// every query and column name.
	seed, err := s.conn.QueryContext(ctx, `SELECT DISTINCT query_name, unnest(json_keys("columns")) FROM `+quoteIdent(schema.ResultsTable))
	if err != nil {
		return fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
	}
	byQuery := map[string][]string{}
	var order []string
	for seed.Next() {
		var q, k string
		if err := seed.Scan(&q, &k); err != nil {
			seed.Close()
			return fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
		}
		if byQuery[q] == nil {
			order = append(order, q)
		}
		byQuery[q] = append(byQuery[q], k)
	}
	seed.Close()
	if err := seed.Err(); err != nil {
		return fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
	}
	for _, q := range order {
		s.createViews(ctx, s.views.Seed(q, byQuery[q]))
	}
	s.log.Info("created result views of existing rows", "queries", len(order))
	return nil
}

// createViews creates or replaces views on the writer connection; s.mu
// is held (or the store is opening). Failures are logged: the view comes
// back from Observe with the next rows of its query.
func (s *Store) createViews(ctx context.Context, views []store.ResultView) {
	s.views.CreateEach(ctx, views, s.log, s.createView)
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
