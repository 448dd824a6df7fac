package sigma_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vigilhq/vigil/detect/internal/clickhousetest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// TestClickHouseDialect runs the DuckDB match cases on a real ClickHouse
// server (18.16 in Debian 12) and expects the same rows.
func TestClickHouseDialect(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts a ClickHouse server")
	}
	srv := clickhousetest.Start(t)
	proc, _ := schema.Lookup("process_creation")
	suites := []struct {
		name    string
		table   schema.Table
		cases   []matchCase
		mapping sigma.Mapping
		wrap    func(string) string
	}{
		{"match", proc, matchCases, nil, ruleYAML},
		{"fold", proc, foldCases, nil, ruleYAML},
		{"modifiers", testTable, modifierCases, testMapping{}, func(d string) string {
			return "title: t\nlogsource:\n  category: test\ndetection:\n" + d + "\n"
		}},
	}
	for _, suite := range suites {
		for _, tc := range suite.cases {
			t.Run(suite.name+"/"+tc.name, func(t *testing.T) {
				r, err := sigma.ParseOne("t.yml", []byte(suite.wrap(tc.detection)))
				if err != nil {
					t.Fatal(err)
				}
				q, err := sigma.Compile(r, sigma.Options{Dialect: sigma.ClickHouse{}, Mapping: suite.mapping, Placeholders: testPlaceholders})
				if err != nil {
					t.Fatal(err)
				}
				srv.Exec(t, "DROP TABLE IF EXISTS `"+suite.table.Name+"`")
				srv.CreateTable(t, suite.table)
				var rows []map[string]any
				for i, r := range tc.rows {
					m := map[string]any{"seq": i + 1}
					for k, v := range r {
						m[k] = v
					}
					rows = append(rows, m)
				}
				srv.Insert(t, suite.table.Name, rows)
				res, err := srv.Query(context.Background(), "SELECT seq FROM "+q.Table+" WHERE "+q.Where+" ORDER BY seq")
				if err != nil {
					t.Fatalf("%v\nWHERE %s", err, q.Where)
				}
				var got []int
				for _, row := range res.Rows {
					n, err := strconv.Atoi(fmt.Sprint(row[0]))
					if err != nil {
						t.Fatalf("seq %v: %v", row[0], err)
					}
					got = append(got, n)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("matched rows %v, want %v\nWHERE %s", got, tc.want, q.Where)
				}
			})
		}
	}
}

// TestCorpusOnClickHouse runs every SigmaHQ rule converted for ClickHouse
// on a real server against empty tables of the Sigma catalog.
func TestCorpusOnClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts a ClickHouse server")
	}
	files := readCorpus(t)
	srv := clickhousetest.Start(t)
	for _, tbl := range schema.SigmaTables() {
		srv.CreateTable(t, tbl)
	}
	opts := sigma.Options{Dialect: sigma.ClickHouse{}, Mapping: sigma.CatalogMapping{}, Placeholders: corpusPlaceholders}
	ran := 0
	for _, f := range files {
		rules, _ := sigma.Parse(f.path, f.data)
		for _, r := range rules {
			q, err := sigma.Compile(r, opts)
			if err != nil {
				continue // TestCorpus counts these
			}
			if _, err := srv.Query(context.Background(), "SELECT count() FROM "+q.Table+" WHERE "+q.Where); err != nil {
				t.Errorf("%s: ClickHouse rejected the query: %v", f.path, err)
			}
			ran++
		}
	}
	t.Logf("%d queries ran on ClickHouse", ran)
}

// TestCorrelationsOnClickHouse runs the correlation cases with the array
// form of sliding windows on a real ClickHouse server.
func TestCorrelationsOnClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts a ClickHouse server")
	}
	srv := clickhousetest.Start(t)
	for _, tc := range correlationCases {
		t.Run(tc.name, func(t *testing.T) {
			rules, errs := sigma.Parse("corr.yml", []byte(baseRules+"---\n"+tc.rule))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			coll, _ := sigma.NewCollection(rules)
			corr := rules[len(rules)-1]
			for _, r := range rules {
				if r.Kind == sigma.KindCorrelation && r.ID == "top" {
					corr = r
				}
			}
			q, err := sigma.CompileCorrelation(corr, sigma.Options{Dialect: sigma.ClickHouse{}, Mapping: testMapping{}, Collection: coll})
			if err != nil {
				t.Fatal(err)
			}
			srv.Exec(t, "DROP TABLE IF EXISTS "+testTable.Name)
			srv.CreateTable(t, testTable)
			day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
			var rows []map[string]any
			for i, e := range tc.events {
				var hh, mm int
				fmt.Sscanf(e.at, "%d:%d", &hh, &mm)
				rows = append(rows, map[string]any{"seq": i + 1, "event_id": fmt.Sprintf("e%03d", i+1),
					"event_time": day.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute),
					"cmd":        e.cmd, "other": e.user, "ip": e.ip, "num": e.bytes})
			}
			srv.Insert(t, testTable.Name, rows)
			res, err := srv.Query(context.Background(), q.SQL)
			if err != nil {
				t.Fatalf("%v\n%s", err, q.SQL)
			}
			var hits []hit
			for _, r := range res.Maps() {
				ts := fmt.Sprint(r["event_time"])
				v, _ := strconv.ParseFloat(fmt.Sprint(r["value"]), 64)
				h := hit{at: ts[11:16], value: v}
				if g, ok := r["group_1"].(string); ok {
					h.group = g
				}
				hits = append(hits, h)
			}
			if got := fmt.Sprint(hits); got != tc.want {
				t.Errorf("hits %s, want %s\n%s", got, tc.want, q.SQL)
			}
		})
	}
}
