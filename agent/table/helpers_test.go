package table

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The fixture tree testdata/root is a fake host: /proc with processes 100
// (sleep), 200 (deleted binary, name with parentheses) and 300 (broken stat),
// socket tables, /etc files.

func openTest(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func query(t testing.TB, e *Engine, sql string) Result {
	t.Helper()
	res, err := e.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("Query(%q): %v", sql, err)
	}
	return res
}

func fixtureEngine(t testing.TB) *Engine {
	t.Helper()
	root, err := filepath.Abs("testdata/root")
	if err != nil {
		t.Fatal(err)
	}
	return openTest(t, Options{Root: root})
}

// wantRows compares a result with the expected rows, exactly.
func wantRows(t *testing.T, e *Engine, sql string, want ...map[string]string) {
	t.Helper()
	res := query(t, e, sql)
	if want == nil {
		want = []map[string]string{}
	}
	if !reflect.DeepEqual(res.Rows, want) {
		t.Errorf("%s\n got: %s\nwant: %s", sql, fmtRows(res.Rows), fmtRows(want))
	}
}

func row(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func fmtRows(rows []map[string]string) string {
	var b strings.Builder
	for _, r := range rows {
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("\n  {")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%q ", k, r[k])
		}
		b.WriteString("}")
	}
	return b.String()
}
