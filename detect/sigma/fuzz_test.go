package sigma_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/detect/sigma"
)

// skeleton replaces the string literals of a query by '?', following the
// dialect's literal syntax, and fails on anything a value could use to
// escape its literal: unbalanced quotes, statement separators, comments.
func skeleton(t *testing.T, d sigma.Dialect, sql string) string {
	t.Helper()
	var b strings.Builder
	backslash := d.Name() == "clickhouse"
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '\'':
			i++
			for ; ; i++ {
				if i >= len(sql) {
					t.Fatalf("unterminated literal in %q", sql)
				}
				if backslash && sql[i] == '\\' {
					i++
					continue
				}
				if sql[i] == '\'' {
					if !backslash && i+1 < len(sql) && sql[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
			b.WriteByte('?')
		case c == ';', c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			t.Fatalf("%q outside a literal in %q", sql[i:min(i+2, len(sql))], sql)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// shapeOf keeps what decides a value's structure (wildcards, escapes,
// windash dashes) and replaces other characters by ones of the same UTF-8
// length, so that encodings produce as many pieces.
func shapeOf(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case strings.ContainsRune("*?\\-/\u2013\u2014\u2015", r):
			b.WriteRune(r)
		case r == utf8.RuneError:
			b.WriteRune(r)
		default:
			b.WriteString([]string{"", "a", "é", "€", "😀"}[utf8.RuneLen(r)])
		}
	}
	return b.String()
}

var fuzzModifiers = []string{"", "|contains", "|startswith|cased", "|endswith", "|windash|contains", "|base64offset|contains", "|contains|all", "|neq", "|re", "|cidr", "|fieldref"}

func ruleFor(t *testing.T, field, value string) []byte {
	doc := map[string]any{
		"title":     "fuzz",
		"logsource": map[string]string{"category": "test"},
		"detection": map[string]any{"sel": map[string]any{field: []string{value, "x"}}, "condition": "sel"},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Skip("not representable in YAML")
	}
	return out
}

// compileFuzz returns the query and the field name as the parser saw it
// (YAML may normalise a key, for example by dropping a leading newline).
func compileFuzz(d sigma.Dialect, src []byte) (string, string, error) {
	r, err := sigma.ParseOne("f.yml", src)
	if err != nil {
		return "", "", err
	}
	field := ""
	if m, ok := r.Detection.Searches["sel"].Expr.(*sigma.Match); ok {
		field = m.Field
	}
	q, err := sigma.Compile(r, sigma.Options{Dialect: d, Mapping: testMapping{}, Placeholders: testPlaceholders})
	if err != nil {
		return "", field, err
	}
	return q.Where, field, nil
}

// FuzzCompile proves that values and field names cannot change the
// structure of the SQL: whatever the value, the query has the same
// skeleton as for a harmless value of the same shape, and a field name
// either maps to a schema column or fails.
func FuzzCompile(f *testing.F) {
	for _, seed := range []struct{ field, value string }{
		{"Cmd", "x' OR 1=1 --"}, {"Cmd", `a\'b`}, {"Cmd", "100%_\\"}, {"Other", "*evil?*"},
		{"Cmd", "\\\\*\\*"}, {"Cmd", "-enc /x"}, {"Ip", "10.0.0.0/8"}, {"Cmd", "Other"},
		{"Cmd\" OR 1=1", "x"}, {"Cmd`; DROP TABLE x", "y"}, {"Num", "42"}, {"Cmd", "'); --"},
	} {
		f.Add(seed.field, seed.value, uint8(0))
	}
	f.Fuzz(func(t *testing.T, rawField, value string, mod uint8) {
		m := fuzzModifiers[int(mod)%len(fuzzModifiers)]
		for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
			sql, field, err := compileFuzz(d, ruleFor(t, rawField+m, value))
			if err != nil {
				if _, ok := err.(*sigma.Error); !ok {
					t.Fatalf("error of type %T: %v", err, err)
				}
				continue
			}
			sk := skeleton(t, d, sql)
			// Field names reach SQL only as schema columns; no field is a
			// keyword search over the text columns.
			col, ok := testMapping{}.Column(testTable, field)
			if field == "" {
				col, ok = testTable.Columns[0], true
			}
			if !ok {
				t.Fatalf("unmapped field %q compiled to %s", field, sql)
			}
			if col.Name != "cmd" && col.Name != "other" || m == "|re" || m == "|cidr" || m == "|fieldref" {
				continue // typed columns and value-parsing modifiers take other paths by design
			}
			ref, _, err := compileFuzz(d, ruleFor(t, rawField+m, shapeOf(value)))
			if err != nil {
				t.Fatalf("value %q compiles but its shape %q does not: %v", value, shapeOf(value), err)
			}
			if want := skeleton(t, d, ref); sk != want {
				t.Fatalf("value %q changed the query structure:\n got %s\nwant %s", value, sk, want)
			}
		}
	})
}

// FuzzParse feeds arbitrary documents to the parser and compiler: no
// panics, and every problem is a positioned *sigma.Error.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ruleYAML("  sel:\n    CommandLine|contains: x\n  condition: sel")))
	f.Add([]byte("title: t\nlogsource: {category: test}\ndetection:\n  a: {Cmd: x}\n  b: [k1, k2]\n  condition: (a or not b) and 1 of them\n---\ntitle: c\ncorrelation: {type: event_count, rules: [x], timespan: 1h, condition: {gte: 1}}\n"))
	f.Add([]byte("title: f\nlogsource: {category: test}\nfilter:\n  rules: any\n  s: {Cmd: x}\n  condition: not s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, errs := sigma.Parse("f.yml", data)
		for _, err := range errs {
			if _, ok := err.(*sigma.Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
		coll, _ := sigma.NewCollection(rules)
		for _, r := range rules {
			for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
				opts := sigma.Options{Dialect: d, Mapping: testMapping{}, Collection: coll}
				switch r.Kind {
				case sigma.KindRule:
					if q, err := sigma.Compile(r, opts); err == nil {
						skeleton(t, d, q.Where)
					}
				case sigma.KindCorrelation:
					if q, err := sigma.CompileCorrelation(r, opts); err == nil {
						skeleton(t, d, q.SQL)
					}
				}
			}
		}
	})
}

// FuzzCondition parses arbitrary conditions over fixed searches.
func FuzzCondition(f *testing.F) {
	for _, c := range []string{"a", "a and not b", "1 of sel_*", "all of them", "(a or b) and not (sel_x)", "a | count() > 5", "not not not a", "((a)"} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cond string) {
		doc := map[string]any{
			"title":     "c",
			"logsource": map[string]string{"category": "test"},
			"detection": map[string]any{"a": map[string]string{"Cmd": "1"}, "b": map[string]string{"Cmd": "2"}, "sel_x": map[string]string{"Other": "3"}, "condition": cond},
		}
		src, err := yaml.Marshal(doc)
		if err != nil {
			t.Skip()
		}
		r, err := sigma.ParseOne("c.yml", src)
		if err != nil {
			if _, ok := err.(*sigma.Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		q, err := sigma.Compile(r, sigma.Options{Mapping: testMapping{}})
		if err != nil {
			t.Fatalf("condition %q parsed but did not compile: %v", cond, err)
		}
		skeleton(t, sigma.DuckDB{}, q.Where)
	})
}
