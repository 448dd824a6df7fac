package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Per-query result views (see store.ResultViews): results_<query> selects
// the common columns of query_results and one String column per result
// column, visitParamExtractString(columns, 'pid'), which every server from
// 18.16 on has (a missing key reads as ""). A view is replaced by DROP and
// CREATE (18.16 has no CREATE OR REPLACE VIEW), so a reader may see it
// missing for a moment. schema.ResultViewsTable keeps what exists across
// restarts.

func (s *Store) initViews(ctx context.Context, fromVersion int64) error {
	cat := s.qualified(schema.ResultViewsTable)
	if err := s.exec(ctx, "CREATE TABLE IF NOT EXISTS "+cat+
		" (view_name String, query_name String, columns String, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY view_name"); err != nil {
		return fmt.Errorf("creating %s: %w", schema.ResultViewsTable, err)
	}
	r, err := s.query(ctx, "SELECT view_name, argMax(query_name, version), argMax(columns, version) FROM "+cat+" GROUP BY view_name", 1<<30, false)
	if err != nil {
		return fmt.Errorf("reading %s: %w", schema.ResultViewsTable, err)
	}
	for _, row := range r.Rows {
		name, _ := row[0].(string)
		query, _ := row[1].(string)
		cols, _ := row[2].(string)
		var keys []string
		if err := json.Unmarshal([]byte(cols), &keys); err != nil {
			s.log.Warn("unreadable result view entry: recreating the view when its query's rows come", "view", name, "err", err)
			continue
		}
		s.views.Load(name, query, keys)
	}
	if fromVersion == 0 || fromVersion >= 2 {
		return nil
	}
	// A database from before views: find every query's column names in one
	// pass. The object is flat with escaped strings, so "name": occurs only
	// as a key.
	r, err = s.query(ctx, "SELECT query_name, groupUniqArrayArray(extractAll(ifNull(columns, ''), "+store.ClickHouseString(`"([^"\\]+)":`)+")) FROM "+
		s.qualified(schema.ResultsTable)+" GROUP BY query_name", 1<<30, false)
	if err != nil {
		return fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
	}
	for _, row := range r.Rows {
		query, _ := row[0].(string)
		var keys []string
		switch v := row[1].(type) {
		case string:
			if err := json.Unmarshal([]byte(v), &keys); err != nil {
				return fmt.Errorf("reading the column names of %s: %w", schema.ResultsTable, err)
			}
		case []any:
			for _, k := range v {
				if ks, ok := k.(string); ok {
					keys = append(keys, ks)
				}
			}
		}
		s.createViews(ctx, s.views.Seed(query, keys))
	}
	s.log.Info("created result views of existing rows", "queries", len(r.Rows))
	return nil
}

// createViews creates or replaces views; s.mu is held (or the store is
// opening). Failures are logged: the view comes back from Observe with the
// next rows of its query.
func (s *Store) createViews(ctx context.Context, views []store.ResultView) {
	s.views.CreateEach(ctx, views, s.log, s.createView)
}

func (s *Store) createView(ctx context.Context, rv store.ResultView) error {
	stmt, err := s.viewSQL(rv)
	if err != nil {
		return err
	}
	cat, err := rv.KeysJSON()
	if err != nil {
		return err
	}
	if err := s.exec(ctx, "DROP TABLE IF EXISTS "+s.qualified(rv.Name)); err != nil {
		return err
	}
	if err := s.exec(ctx, stmt); err != nil {
		return err
	}
	ins, err := Bind("INSERT INTO "+s.qualified(schema.ResultViewsTable)+" (view_name, query_name, columns, version) VALUES (?, ?, ?, ?)",
		rv.Name, rv.Query, cat, time.Now().UnixNano())
	if err != nil {
		return err
	}
	return s.exec(ctx, ins)
}

// viewSQL renders the view. The view name is [a-z0-9_] and column names
// are plain identifiers (store.ResultViews guarantees both); the query
// name, the only untrusted text, and the JSON keys are literals from
// store.ClickHouseString.
func (s *Store) viewSQL(rv store.ResultView) (string, error) {
	if !store.ValidViewName(rv.Name) {
		return "", fmt.Errorf("view name %q is not [a-z0-9_]", rv.Name)
	}
	var b strings.Builder
	b.WriteString("CREATE VIEW " + s.qualified(rv.Name) + " AS SELECT ")
	for i, c := range store.ResultViewFixedColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ident(c))
	}
	for _, c := range rv.Columns {
		if !store.ValidResultColumn(c.Key) || !store.ValidResultColumn(c.Name) {
			return "", fmt.Errorf("column %q (%q) is not an identifier", c.Name, c.Key)
		}
		b.WriteString(", visitParamExtractString(columns, " + store.ClickHouseString(c.Key) + ") AS " + ident(c.Name))
	}
	b.WriteString(" FROM " + s.qualified(schema.ResultsTable) + " WHERE query_name = " + store.ClickHouseString(rv.Query))
	return b.String(), nil
}
