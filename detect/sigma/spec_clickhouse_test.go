package sigma_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/clickhousetest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// TestSpecExamplesOnClickHouse runs the ClickHouse SQL of every example on
// a real server, on empty tables and then through the scenarios of
// spec_semantics_test.go with the same expectations as on DuckDB.
func TestSpecExamplesOnClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts a ClickHouse server")
	}
	sets := loadSpecSets(t)
	srv := clickhousetest.Start(t)
	ctx := context.Background()

	for _, s := range sortedSets(sets) {
		t.Run("empty/"+s.taxonomy, func(t *testing.T) {
			coll, _ := sigma.NewCollection(s.all())
			createSpecTables(t, srv, s.all())
			opts := sigma.Options{Dialect: sigma.ClickHouse{}, Mapping: specMapping{}, Collection: coll}
			for _, r := range s.examples {
				var sql string
				switch r.Kind {
				case sigma.KindRule:
					q, err := sigma.Compile(r, opts)
					if err != nil {
						t.Errorf("%s: %v", r.File, err)
						continue
					}
					sql = sigma.SelectSQL(sigma.ClickHouse{}, q)
				case sigma.KindCorrelation:
					q, err := sigma.CompileCorrelation(r, opts)
					if err != nil {
						t.Errorf("%s: %v", r.File, err)
						continue
					}
					sql = q.SQL
				default:
					continue // filters run with the rules they name, below
				}
				if _, err := srv.Query(ctx, sql); err != nil {
					t.Errorf("%s: ClickHouse rejects the SQL: %v\n%s", r.File, err, sql)
				}
			}
		})
	}

	for _, sc := range specScenarios {
		t.Run(sc.name, func(t *testing.T) {
			rules := sc.rules(t, sets)
			got := runOnClickHouse(t, srv, rules, sc.build())
			sc.verify(t, rules, got)
		})
	}
}

// createSpecTables (re)creates the tables the rules' logsources map to.
func createSpecTables(t *testing.T, srv *clickhousetest.Server, rules []*sigma.Rule) []schema.Table {
	t.Helper()
	var tables []schema.Table
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Kind != sigma.KindRule {
			continue
		}
		tbl, ok := specMapping{}.Table(r.Logsource)
		if !ok || seen[tbl.Name] {
			continue
		}
		seen[tbl.Name] = true
		srv.Exec(t, "DROP TABLE IF EXISTS `"+tbl.Name+"`")
		srv.CreateTable(t, tbl)
		tables = append(tables, tbl)
	}
	return tables
}

// runOnClickHouse loads the events as sigma.RunEvents does (each event
// into every table whose columns hold all its fields) and returns, per
// rule, the ids of the events it matches or at which it alerts.
func runOnClickHouse(t *testing.T, srv *clickhousetest.Server, rules []*sigma.Rule, evs *events) map[*sigma.Rule][]string {
	t.Helper()
	ctx := context.Background()
	coll, errs := sigma.NewCollection(rules)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m := specMapping{}
	for _, tbl := range createSpecTables(t, srv, rules) {
		var rows []map[string]any
		for i, ev := range evs.evs {
			row := map[string]any{"seq": i + 1, "event_id": ev.ID, "event_time": ev.Time}
			for f, v := range ev.Fields {
				col, ok := m.Column(tbl, f)
				if !ok {
					row = nil
					break
				}
				if n, isNum := v.(json.Number); isNum && col.Type == schema.Text {
					v = n.String()
				}
				row[col.Name] = v
			}
			if row != nil {
				rows = append(rows, row)
			}
		}
		if len(rows) > 0 {
			srv.Insert(t, tbl.Name, rows)
		}
	}
	opts := sigma.Options{Dialect: sigma.ClickHouse{}, Mapping: m, Collection: coll}
	got := map[*sigma.Rule][]string{}
	for _, r := range rules {
		var sql string
		switch r.Kind {
		case sigma.KindRule:
			q, err := sigma.Compile(r, opts)
			if err != nil {
				t.Fatal(err)
			}
			sql = "SELECT event_id FROM `" + q.Table + "` WHERE " + q.Where + " ORDER BY seq"
		case sigma.KindCorrelation:
			q, err := sigma.CompileCorrelation(r, opts)
			if err != nil {
				t.Fatal(err)
			}
			sql = q.SQL
		default:
			continue
		}
		res, err := srv.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.File, err, sql)
		}
		for _, row := range res.Maps() {
			got[r] = append(got[r], fmt.Sprint(row["event_id"]))
		}
	}
	return got
}
