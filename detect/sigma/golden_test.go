package sigma_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.sigmatest")

// goldenMapping is the Sigma catalog, plus testTable for category "test".
type goldenMapping struct{ sigma.CatalogMapping }

func (g goldenMapping) Table(ls sigma.Logsource) (schema.Table, bool) {
	if ls.Category == "test" {
		return testTable, true
	}
	return g.CatalogMapping.Table(ls)
}

// A .sigmatest file has sections introduced by "-- name --" lines:
// rule.yml (input: one or more YAML documents; the last is compiled),
// then duckdb.sql and clickhouse.sql (output: the query, or "error: ...").
type section struct{ name, body string }

func parseSections(data []byte) []section {
	var out []section
	for _, line := range strings.SplitAfter(string(data), "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") && len(trimmed) > 6 {
			out = append(out, section{name: strings.TrimSpace(trimmed[3 : len(trimmed)-3])})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body += line
		}
	}
	return out
}

func convertForGolden(src string, d sigma.Dialect) string {
	rules, errs := sigma.Parse("rule.yml", []byte(src))
	if len(errs) > 0 {
		return "error: " + errs[0].Error()
	}
	coll, errs := sigma.NewCollection(rules)
	if len(errs) > 0 {
		return "error: " + errs[0].Error()
	}
	r := rules[len(rules)-1]
	opts := sigma.Options{Dialect: d, Mapping: goldenMapping{}, Collection: coll, Placeholders: testPlaceholders}
	if r.Kind == sigma.KindCorrelation {
		q, err := sigma.CompileCorrelation(r, opts)
		if err != nil {
			return "error: " + err.Error()
		}
		return q.SQL
	}
	q, err := sigma.Compile(r, opts)
	if err != nil {
		return "error: " + err.Error()
	}
	return sigma.SelectSQL(d, q)
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.sigmatest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			secs := parseSections(data)
			if len(secs) == 0 || secs[0].name != "rule.yml" {
				t.Fatalf("%s: first section must be rule.yml", f)
			}
			src := secs[0].body
			got := map[string]string{
				"duckdb.sql":     convertForGolden(src, sigma.DuckDB{}),
				"clickhouse.sql": convertForGolden(src, sigma.ClickHouse{}),
			}
			if *update {
				var b bytes.Buffer
				b.WriteString("-- rule.yml --\n" + src)
				for _, name := range []string{"duckdb.sql", "clickhouse.sql"} {
					b.WriteString("-- " + name + " --\n" + got[name] + "\n")
				}
				if err := os.WriteFile(f, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			seen := 0
			for _, s := range secs[1:] {
				want, ok := got[s.name]
				if !ok {
					t.Errorf("unknown section %q", s.name)
					continue
				}
				seen++
				if strings.TrimRight(s.body, "\n") != want {
					t.Errorf("%s differs (run go test -update to accept)\n got: %s\nwant: %s", s.name, want, strings.TrimRight(s.body, "\n"))
				}
			}
			if seen != 2 {
				t.Errorf("want duckdb.sql and clickhouse.sql sections, found %d", seen)
			}
		})
	}
}
