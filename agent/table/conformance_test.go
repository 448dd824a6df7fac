package table

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestConformance compares every table we register with osquery's spec for
// Linux: same columns, in order, with the same types and hidden/required
// flags, and the same event-table attribute.
func TestConformance(t *testing.T) {
	specs := loadSpecs(t)
	e := openTest(t, Options{})
	tables := e.Tables()
	if len(tables) == 0 {
		t.Fatal("no tables registered")
	}
	checked := map[string]bool{}
	for _, s := range tables {
		if vigilOnlyTables[s.Name] {
			// Vigil's own tables have no osquery spec; they must not
			// shadow one either.
			if _, ok := specs[s.Name]; ok {
				t.Errorf("Vigil-only table %q has the name of an osquery table", s.Name)
			}
			if !strings.HasPrefix(s.Name, "vigil_") {
				t.Errorf("Vigil-only table %q must be named vigil_*", s.Name)
			}
			continue
		}
		checked[s.Name] = true
		t.Run(s.Name, func(t *testing.T) {
			spec, ok := specs[s.Name]
			if !ok {
				t.Fatalf("table %q has no Linux spec file", s.Name)
			}
			for _, d := range specDiffs(spec, s) {
				t.Error(d)
			}
		})
	}
	names := []string{"osquery_events", "osquery_schedule", "osquery_info", "process_events"}
	if runtime.GOOS == "linux" {
		names = append(names, issueTables()...)
	}
	for _, name := range names {
		if !checked[name] {
			t.Errorf("%s was not checked against its spec", name)
		}
	}
}

// specDiffs lists how schema s differs from its osquery spec: columns (in
// order), types, collations, hidden/required flags and the event-table
// attribute. Empty means conformant.
func specDiffs(spec specTable, s Schema) []string {
	var out []string
	want := spec.linuxColumns()
	if len(want) != len(s.Columns) {
		out = append(out, fmt.Sprintf("%d columns, spec has %d", len(s.Columns), len(want)))
	}
	got := map[string]Column{}
	for _, c := range s.Columns {
		got[c.Name] = c
	}
	for i, w := range want {
		g, ok := got[w.Name]
		if !ok {
			out = append(out, fmt.Sprintf("missing column %q (%s)", w.Name, w.Type))
			continue
		}
		if g.Type != w.Type {
			out = append(out, fmt.Sprintf("column %q: type %s, spec says %s", w.Name, g.Type, w.Type))
		}
		if g.Collate != w.Collate {
			out = append(out, fmt.Sprintf("column %q: collate %q, spec says %q", w.Name, g.Collate, w.Collate))
		}
		if g.Hidden != w.Hidden || g.Required != w.Required {
			out = append(out, fmt.Sprintf("column %q: hidden=%v required=%v, spec says hidden=%v required=%v", w.Name, g.Hidden, g.Required, w.Hidden, w.Required))
		}
		if i < len(s.Columns) && s.Columns[i].Name != w.Name {
			out = append(out, fmt.Sprintf("column %d is %q, spec has %q", i, s.Columns[i].Name, w.Name))
		}
	}
	if s.Event != spec.Event {
		out = append(out, fmt.Sprintf("event table = %v, spec says %v", s.Event, spec.Event))
	}
	return out
}

// vigilOnlyTables are Vigil's own tables (doc.go lists them): they have no
// osquery spec, so the conformance test leaves them out by name.
var vigilOnlyTables = map[string]bool{
	"vigil_event_drops": true,
}

// TestHiddenColumns checks that SELECT * leaves hidden columns out and
// that they can still be selected by name.
func TestHiddenColumns(t *testing.T) {
	e := openTest(t, Options{})
	for _, s := range e.Tables() {
		var hidden, visible []string
		for _, c := range s.Columns {
			if c.Hidden {
				hidden = append(hidden, c.Name)
			} else {
				visible = append(visible, c.Name)
			}
		}
		if len(hidden) == 0 || hasRequired(s) {
			continue
		}
		res := query(t, e, `SELECT * FROM "`+s.Name+`" LIMIT 1`)
		if strings.Join(res.Columns, ",") != strings.Join(visible, ",") {
			t.Errorf("%s: SELECT * columns %v, want %v", s.Name, res.Columns, visible)
		}
		res = query(t, e, `SELECT "`+strings.Join(hidden, `", "`)+`" FROM "`+s.Name+`" LIMIT 1`)
		if strings.Join(res.Columns, ",") != strings.Join(hidden, ",") {
			t.Errorf("%s: hidden columns selected as %v, want %v", s.Name, res.Columns, hidden)
		}
	}
}

func hasRequired(s Schema) bool {
	for _, c := range s.Columns {
		if c.Required {
			return true
		}
	}
	return false
}

// TestParseAllSpecs runs the parser over every spec file of every
// platform: the parser must understand the whole format, not just the
// files we use.
func TestParseAllSpecs(t *testing.T) {
	dir := specDir(t)
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".table") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, err := parseSpec(string(b))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if len(st.Columns) == 0 {
			t.Errorf("%s: no columns parsed", p)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 200 {
		t.Errorf("parsed %d spec files, expected the whole osquery tree (280+)", n)
	}
}

func TestParseSpecErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`table_name("x"`, "unexpected end of file"},
		{"table_name(\"x\")\nschema([Column(\"a\")])", "line 2: Column wants"},
		{`schema([Column("a", TEXT)])`, "no table_name"},
		{`table_name("x") schema("nope")`, "wants a list of columns"},
		{"table_name(\"x)\n", "line 1: newline in string"},
		{`table_name("x") extended_schema(LINUX + "a", [])`, "+ joins identifiers only"},
	} {
		_, err := parseSpec(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseSpec(%q) = %v, want error containing %q", tc.src, err, tc.want)
		}
	}
	st, err := parseSpec(`table_name("t") schema([Column("a", BIGINT, "d" "e", hidden=True, index=True), ForeignKey(column="a", table="b")])
extended_schema(LINUX + DARWIN, [Column("b", TEXT, """multi
line""", required=True)])
extended_schema(WINDOWS, [Column("c", TEXT, "")])
attributes(event_subscriber=True)`)
	if err != nil {
		t.Fatal(err)
	}
	cols := st.linuxColumns()
	if st.Name != "t" || !st.Event || len(cols) != 2 || cols[0].Name != "a" || cols[0].Type != "BIGINT" || !cols[0].Hidden || !cols[0].Index || cols[1].Name != "b" || !cols[1].Required {
		t.Errorf("parsed %+v (linux columns %+v)", st, cols)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(`table_name("t") schema([Column("a", BIGINT, "d", hidden=True)])`)
	f.Add("table_name(\"x\")\nextended_schema(LINUX + DARWIN, [Column(\"b\", TEXT, \"\"\"m\nl\"\"\", required=True)])\nattributes(event_subscriber=True, cacheable={\"a\": 1})")
	f.Fuzz(func(t *testing.T, src string) {
		st, err := parseSpec(src)
		if err != nil {
			return
		}
		if st.Name == "" {
			t.Fatal("parsed without a table name")
		}
		for _, c := range st.linuxColumns() {
			if c.Name == "" && c.Type == "" {
				t.Fatalf("empty column parsed from %q", src)
			}
		}
	})
}
