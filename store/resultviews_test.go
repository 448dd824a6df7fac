package store_test

import (
	"bytes"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

var viewNameRE = regexp.MustCompile(`^results_[a-z0-9_]{1,55}$`)

func TestResultViewName(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"processes", "results_processes"},
		{"pack_ir_process_events", "results_pack_ir_process_events"},
		{"Processes", "results_processes_"},       // lossy: hashed
		{"x' OR '1'='1", "results_x__or__1___1_"}, // lossy: hashed
		{"", "results__"},
		{"a_0123456789abcdef", "results_a_0123456789abcdef_"}, // looks hashed: hashed again
	} {
		got := store.ResultViewName(c.query)
		if !viewNameRE.MatchString(got) {
			t.Errorf("ResultViewName(%q) = %q: not results_[a-z0-9_]", c.query, got)
		}
		if strings.HasSuffix(c.want, "_") && c.query != "" || c.query == "" {
			// Lossy names end in "_" and 16 hex digits.
			if !strings.HasPrefix(got, c.want) || len(got) != len(c.want)+16 {
				t.Errorf("ResultViewName(%q) = %q, want %q and 16 hex digits", c.query, got, c.want)
			}
		} else if got != c.want {
			t.Errorf("ResultViewName(%q) = %q, want %q", c.query, got, c.want)
		}
	}
	// Names equal after lowercasing and replacement get different views.
	seen := map[string]string{}
	for _, q := range []string{"a b", "a-b", "a_b", "A_B", "a\x00b", "a\u00e9b", "A B"} {
		v := store.ResultViewName(q)
		if other, ok := seen[v]; ok {
			t.Errorf("%q and %q share view %s", q, other, v)
		}
		seen[v] = q
	}
	long := strings.Repeat("x", 200)
	if v := store.ResultViewName(long); len(v) > 63 || v == store.ResultViewName(long+"y") {
		t.Errorf("long names: %q", v)
	}
}

func FuzzResultViewName(f *testing.F) {
	f.Add("processes")
	f.Add("x'; DROP TABLE query_results; --")
	f.Add("Weird Query-Name!")
	f.Fuzz(func(t *testing.T, q string) {
		v := store.ResultViewName(q)
		if !viewNameRE.MatchString(v) || len(v) > 63 {
			t.Fatalf("ResultViewName(%q) = %q", q, v)
		}
		if v != store.ResultViewName(q) {
			t.Fatalf("ResultViewName(%q) not deterministic", q)
		}
		if v == "results_"+q {
			return // the exact form: only for names already [a-z0-9_]
		}
		if len(v) < 25 || v[len(v)-17] != '_' {
			t.Fatalf("ResultViewName(%q) = %q: changed name without hash suffix", q, v)
		}
	})
}

func TestValidResultColumn(t *testing.T) {
	for name, want := range map[string]bool{
		"pid": true, "_x": true, "Path": true, "a1": true, strings.Repeat("a", 64): true,
		"": false, "1a": false, "a b": false, "a-b": false, `a"b`: false, "a'b": false, "ü": false,
		strings.Repeat("a", 65): false, "a;": false, "$.x": false,
	} {
		if got := store.ValidResultColumn(name); got != want {
			t.Errorf("ValidResultColumn(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestViewColumns(t *testing.T) {
	got := store.ViewColumns([]string{"pid", "action", "bad col", "Name", "name", "seq", "col_seq", "1x"})
	want := []store.ResultViewColumn{
		{Name: "Name", Key: "Name"},
		{Name: "col_action", Key: "action"},
		{Name: "col_seq", Key: "col_seq"}, // sorts before seq, so seq's rename is taken
		{Name: "pid", Key: "pid"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ViewColumns = %v, want %v", got, want)
	}
	many := make([]string, 0, store.MaxResultViewColumns+10)
	for i := range cap(many) {
		many = append(many, "c"+strconv.Itoa(i))
	}
	if n := len(store.ViewColumns(many)); n != store.MaxResultViewColumns {
		t.Errorf("ViewColumns of %d names: %d columns, want %d", len(many), n, store.MaxResultViewColumns)
	}
}

func row(q string, cols ...string) vigil.ResultRow {
	m := map[string]string{}
	for _, c := range cols {
		m[c] = "v"
	}
	return vigil.ResultRow{Query: q, Columns: m}
}

func TestResultViewsObserve(t *testing.T) {
	var logs bytes.Buffer
	v := store.NewResultViews(2, slog.New(slog.NewTextHandler(&logs, nil)))
	got := v.Observe([]vigil.ResultRow{row("a", "pid"), row("a", "name"), row("b", "x"), row("c", "y"), row("c", "z")})
	if len(got) != 2 || got[0].Query != "a" || got[1].Query != "b" {
		t.Fatalf("Observe: %+v", got)
	}
	if want := []store.ResultViewColumn{{Name: "name", Key: "name"}, {Name: "pid", Key: "pid"}}; !slices.Equal(got[0].Columns, want) {
		t.Errorf("view a columns %v, want %v", got[0].Columns, want)
	}
	if st := v.Stats(); st.Views != 2 || st.Refused != 2 {
		t.Errorf("Stats = %+v, want 2 views, 2 refused rows (c's)", st)
	}
	if n := strings.Count(logs.String(), "cap reached"); n != 1 {
		t.Errorf("cap logged %d times, want once:\n%s", n, logs.String())
	}
	// Not created yet: asked for again.
	if again := v.Observe([]vigil.ResultRow{row("a", "pid")}); len(again) != 1 {
		t.Errorf("view not created: Observe again = %+v", again)
	}
	v.Created(got[0])
	v.Created(got[1])
	if again := v.Observe([]vigil.ResultRow{row("a", "pid", "name"), row("b", "x")}); len(again) != 0 {
		t.Errorf("nothing new: Observe = %+v", again)
	}
	// A name that cannot be a column changes nothing; a valid one does.
	if again := v.Observe([]vigil.ResultRow{row("a", "bad col")}); len(again) != 0 {
		t.Errorf("invalid column: Observe = %+v", again)
	}
	if !strings.Contains(logs.String(), "bad col") {
		t.Errorf("invalid column not logged:\n%s", logs.String())
	}
	grown := v.Observe([]vigil.ResultRow{row("a", "uid")})
	if len(grown) != 1 || len(grown[0].Columns) != 3 {
		t.Fatalf("new column: Observe = %+v", grown)
	}
	// A view made before more columns came is not current.
	v.Observe([]vigil.ResultRow{row("a", "gid")})
	v.Created(grown[0])
	if again := v.Observe(nil); len(again) != 0 {
		t.Errorf("Observe(nil) = %+v", again)
	}
	if again := v.Observe([]vigil.ResultRow{row("a", "pid")}); len(again) != 1 || len(again[0].Columns) != 4 {
		t.Errorf("stale view: Observe = %+v", again)
	}
}

func TestResultViewsRefuseUnrenderableNames(t *testing.T) {
	v := store.NewResultViews(0, nil)
	for _, q := range []string{"a\x00b", "a\xffb", strings.Repeat("q", 2000)} {
		if got := v.Observe([]vigil.ResultRow{row(q, "pid")}); len(got) != 0 {
			t.Errorf("query %q: Observe = %+v", q, got)
		}
	}
	if st := v.Stats(); st.Views != 0 || st.Refused != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestResultViewsLoad(t *testing.T) {
	v := store.NewResultViews(0, nil)
	v.Load("results_a", "a", []string{"pid", "name"})
	if got := v.Observe([]vigil.ResultRow{row("a", "name", "pid")}); len(got) != 0 {
		t.Errorf("loaded view: Observe = %+v", got)
	}
	if got := v.Observe([]vigil.ResultRow{row("a", "uid")}); len(got) != 1 || len(got[0].Columns) != 3 {
		t.Errorf("loaded view, new column: Observe = %+v", got)
	}
}

func TestDuckDBString(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "'plain'", "it's": "'it''s'", `back\slash`: `'back\slash'`, "": "''", "''": "''''''", "ünï": "'ünï'",
	} {
		if got, ok := store.DuckDBString(in); !ok || got != want {
			t.Errorf("DuckDBString(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"a\x00b", "a\xffb"} {
		if got, ok := store.DuckDBString(in); ok {
			t.Errorf("DuckDBString(%q) = %q, want refusal", in, got)
		}
	}
}
