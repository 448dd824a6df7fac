package sigma

import (
	"strings"
	"unicode"
)

// MatchAny renders each pattern in the cheapest form DuckDB evaluates
// exactly like "expr ILIKE pattern ESCAPE '\'" (or LIKE when cased).
// DuckDB's ILIKE lowers both sides with lower() and then runs LIKE, and
// ILIKE with an ESCAPE clause is the slowest of the equivalent forms
// (measured on 1.5.6: 2–7× the time of contains(lower(col), ...)), so:
//
//   - a value without wildcards becomes lower(expr) = 'v' (one IN list
//     for several), starts_with, ends_with or contains on lower(expr)
//     with the value lowered here; duckContainsListMin or more contains
//     values become one regexp_matches of their quoted alternation;
//   - a value with wildcards becomes lower(expr) LIKE 'lowered pattern',
//     with ESCAPE '\' only when the pattern escapes something;
//   - cased drops the lower() calls.
//
// Lowering the value in Go is exact because strings.ToLower and DuckDB's
// lower() map every code point the same way (one code point to one,
// without context); TestDuckDBLowerAgrees checks all of them on the real
// engine. A value holding a code point Go's tables do not know (one a
// newer Unicode version may give a case mapping) keeps ILIKE.
func (d DuckDB) MatchAny(expr string, ps []Pattern, cased bool) string {
	lower := "lower(" + expr + ")"
	var items, exact, contains []string
	for _, p := range ps {
		if p.HasDash() {
			items = append(items, d.Regexp(expr, p.Regex(), regexFlags(cased)))
			continue
		}
		lhs := expr
		if !cased {
			lp, ok := p.lower()
			if !ok {
				items = append(items, expr+" ILIKE "+d.String(p.Like())+` ESCAPE '\'`)
				continue
			}
			p, lhs = lp, lower
		}
		switch shape, lit := p.Shape(); shape {
		case "exact":
			exact = append(exact, lit)
		case "prefix":
			items = append(items, "starts_with("+lhs+", "+d.String(lit)+")")
		case "suffix":
			items = append(items, "ends_with("+lhs+", "+d.String(lit)+")")
		case "contains":
			if !cased {
				contains = append(contains, lit)
				continue
			}
			items = append(items, "contains("+lhs+", "+d.String(lit)+")")
		default:
			items = append(items, d.like(lhs, p))
		}
	}
	// DuckDB computes lower(expr) once per contains() of an OR (~0.12 µs
	// a row each), so from a few values on one regular expression over
	// the lowered text is faster (measured: 5 values about even, 20
	// values 8×, 100 values 50×).
	if len(contains) >= duckContainsListMin {
		items = append(items, d.Regexp(lower, alternation(contains), ""))
	} else {
		for _, v := range contains {
			items = append(items, "contains("+lower+", "+d.String(v)+")")
		}
	}
	lhs := expr
	if !cased {
		lhs = lower
	}
	switch len(exact) {
	case 0:
	case 1:
		items = append([]string{lhs + " = " + d.String(exact[0])}, items...)
	default:
		lits := make([]string, len(exact))
		for i, v := range exact {
			lits[i] = d.String(v)
		}
		items = append([]string{lhs + " IN (" + strings.Join(lits, ", ") + ")"}, items...)
	}
	return orSQL(items)
}

// duckContainsListMin is the number of case-insensitive contains values
// of one match from which they become one regular expression.
const duckContainsListMin = 6

// like renders a LIKE with wildcards. LIKE has no default escape
// character in DuckDB, so a pattern that escapes nothing needs no ESCAPE
// clause, which is markedly faster.
func (d DuckDB) like(lhs string, p Pattern) string {
	pat := p.Like()
	if strings.IndexByte(pat, '\\') < 0 {
		return lhs + " LIKE " + d.String(pat)
	}
	return lhs + " LIKE " + d.String(pat) + ` ESCAPE '\'`
}

// lower returns the pattern with its literal text lowered as DuckDB's
// lower() does, or false when a literal holds a code point whose case
// mapping Go cannot vouch for (see MatchAny).
func (p Pattern) lower() (Pattern, bool) {
	out := Pattern{parts: make([]part, len(p.parts))}
	for i, x := range p.parts {
		if x.kind == partLit {
			if !foldKnown(x.s) {
				return Pattern{}, false
			}
			x.s = strings.ToLower(x.s)
		}
		out.parts[i] = x
	}
	return out, true
}

// foldKnown reports whether every code point of s is ASCII or assigned in
// Go's Unicode tables, so that its lowercase form is the one DuckDB uses.
func foldKnown(s string) bool {
	for _, r := range s {
		if r < 0x80 {
			continue
		}
		if !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.Cc, unicode.Cf, unicode.Co) {
			return false
		}
	}
	return true
}
