package sigma

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
)

// TestDuckDBLowerAgrees checks on the real engine that DuckDB's lower()
// maps every code point foldKnown accepts as strings.ToLower does, and
// that ILIKE is lower() on both sides: the premises of DuckDB.MatchAny.
func TestDuckDBLowerAgrees(t *testing.T) {
	db := duckdbtest.Open(t)
	ctx := context.Background()
	checked, differ := 0, 0
	for lo := 0; lo < 0x110000; lo += 0x10000 {
		res, err := db.Query(ctx, fmt.Sprintf(`SELECT i, lower(chr(i::INTEGER)) FROM range(%d, %d) t(i) WHERE i > 0 AND (i < 55296 OR i > 57343)`, lo, lo+0x10000))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range res.Rows {
			s := string(rune(row[0].(int64)))
			if !foldKnown(s) {
				continue
			}
			checked++
			if got, want := row[1].(string), strings.ToLower(s); got != want {
				differ++
				if differ <= 20 {
					t.Errorf("U+%04X %q: DuckDB lower() = %q, strings.ToLower = %q", row[0], s, got, want)
				}
			}
		}
	}
	if checked < 200_000 {
		t.Fatalf("checked only %d code points", checked)
	}
	if differ > 0 {
		t.Fatalf("%d of %d code points lower differently: make foldKnown reject them", differ, checked)
	}
	// ILIKE lowers the text it searches as lower() does, for every code
	// point (the pattern is the upper case of the same one, so that the
	// pattern side is folded too).
	// Surrogates and the LIKE metacharacters % \ _ are replaced by 'A'.
	res, err := db.Query(ctx, `WITH p AS (SELECT CASE WHEN i BETWEEN 55296 AND 57343 OR i IN (37, 92, 95) THEN 65 ELSE i END::INTEGER AS i FROM range(1, 1114112) t(i)),
		c AS (SELECT chr(i) AS a, upper(chr(i)) AS u FROM p)
		SELECT count(*) FROM c WHERE (('x' || a || 'y') ILIKE ('%' || u || '%') ESCAPE '\') IS DISTINCT FROM contains(lower('x' || a || 'y'), lower(u))`)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Rows[0][0].(int64); n != 0 {
		t.Fatalf("ILIKE and contains(lower(...)) differ on %d code points", n)
	}
}

// TestDuckDBMatchAnyEqualsILike runs the compiled forms against the
// reference "ILIKE pattern ESCAPE '\'" (LIKE when cased) on the real
// engine, over text with non-ASCII letters, SQL wildcards, backslashes,
// quotes and NULL, for single patterns and lists.
func TestDuckDBMatchAnyEqualsILike(t *testing.T) {
	db := duckdbtest.Open(t)
	ctx := context.Background()
	cores := []string{"abc", "ÄÖÜ", "äöü", "İstanbul", "istanbul", "ıstanbul", "ΟΔΟΣ", "οδος", "straße", "STRASSE", "ẞ",
		"K", "\u212a", "Å", "\u212b", "ǅ", "ǆ", "ﬃ", "😀", "100%_x", "100ab_x", `C:\Temp\`, `c:\temp\`, `a\b`, "it's", "x\ny", "", "\u0378"}
	var data []string
	for _, c := range cores {
		for _, v := range []string{c, strings.ToUpper(c), strings.ToLower(c)} {
			for _, pre := range []string{"", "x", "Ä"} {
				for _, suf := range []string{"", "y", "ö"} {
					data = append(data, pre+v+suf)
				}
			}
		}
	}
	if err := db.Exec(ctx, `CREATE TABLE d (s VARCHAR)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(ctx, `INSERT INTO d VALUES (NULL)`); err != nil {
		t.Fatal(err)
	}
	var d DuckDB
	for _, s := range data {
		if err := db.Exec(ctx, "INSERT INTO d VALUES ("+d.String(s)+")"); err != nil {
			t.Fatal(err)
		}
	}
	raws := []string{"abc", "ÄÖÜ", "İSTANBUL", "ΟΔΟΣ", "STRASSE", "ß", "ẞ", "K", "Å", "ǅ", "😀", "100%_x", `C:\Temp\`, `a\b`, "it's", "x\nY", "",
		"a*c", "Ä?Ö", `x\\*y`, `100%*_`, `\*lit\?`, "?", "*", "a\u0378"}
	var pats [][]Pattern
	var all, exacts, containses []Pattern
	for _, raw := range raws {
		p := ParseString(raw)
		forms := []Pattern{p, p.withPrefixAny(), p.withSuffixAny(), p.withPrefixAny().withSuffixAny()}
		for _, f := range forms {
			pats = append(pats, []Pattern{f})
		}
		all = append(all, forms...)
		exacts = append(exacts, forms[0])
		containses = append(containses, forms[3])
	}
	pats = append(pats, all, exacts, containses)
	for _, ps := range pats {
		for _, cased := range []bool{false, true} {
			op := " ILIKE "
			if cased {
				op = " LIKE "
			}
			var ref []string
			for _, p := range ps {
				ref = append(ref, "s"+op+d.String(p.Like())+` ESCAPE '\'`)
			}
			got := d.MatchAny("s", ps, cased)
			q := "SELECT s FROM d WHERE (" + got + ") IS DISTINCT FROM (" + orSQL(ref) + ")"
			res, err := db.Query(ctx, q)
			if err != nil {
				t.Fatalf("%v\n%s", err, q)
			}
			if len(res.Rows) > 0 {
				t.Errorf("cased=%v %v: %s differs from ILIKE/LIKE on %d rows, e.g. %q", cased, ps, got, len(res.Rows), res.Rows[0][0])
			}
		}
	}
}

func TestDuckDBMatchAnyForms(t *testing.T) {
	var d DuckDB
	ps := func(raws ...string) []Pattern {
		var out []Pattern
		for _, r := range raws {
			out = append(out, ParseString(r))
		}
		return out
	}
	tests := []struct {
		ps    []Pattern
		cased bool
		want  string
	}{
		{ps("*ÄB*"), false, "contains(lower(c), 'äb')"},
		{ps("ÄB*"), false, "starts_with(lower(c), 'äb')"},
		{ps("*ÄB"), false, "ends_with(lower(c), 'äb')"},
		{ps("ÄB"), false, "lower(c) = 'äb'"},
		{ps("A", "*x*", "B"), false, "(lower(c) IN ('a', 'b') OR contains(lower(c), 'x'))"},
		{ps("*A*", "*B*", "*C*", "*D*", "*E*"), false, "(contains(lower(c), 'a') OR contains(lower(c), 'b') OR contains(lower(c), 'c') OR contains(lower(c), 'd') OR contains(lower(c), 'e'))"},
		{ps("X", "*A.*", "*B*", "*AC*", "*D*", "*E*", "*F*"), false, "(lower(c) = 'x' OR regexp_matches(lower(c), 'a(?:\\.|c)|b|d|e|f'))"},
		{ps("*ÄB*"), true, "contains(c, 'ÄB')"},
		{ps("A", "B"), true, "c IN ('A', 'B')"},
		{ps("A?B*"), false, "lower(c) LIKE 'a_b%'"},
		{ps("A?B*"), true, "c LIKE 'A_B%'"},
		{ps("1%?"), false, `lower(c) LIKE '1\%_' ESCAPE '\'`},
		{ps(`IT'S\*`), false, `lower(c) = 'it''s*'`},
		// A code point Go's tables do not know keeps ILIKE.
		{ps("*A\u0378*"), false, `c ILIKE '%A` + "\u0378" + `%' ESCAPE '\'`},
		{ps("A", "*B\u0378"), false, `(lower(c) = 'a' OR c ILIKE '%B` + "\u0378" + `' ESCAPE '\')`},
	}
	for _, tc := range tests {
		if got := d.MatchAny("c", tc.ps, tc.cased); got != tc.want {
			t.Errorf("MatchAny(%v, cased=%v) = %s, want %s", tc.ps, tc.cased, got, tc.want)
		}
	}
}
