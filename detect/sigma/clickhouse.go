package sigma

import (
	"strings"

	"github.com/vigilhq/vigil/store"
)

// ClickHouse is the dialect of ClickHouse servers from 18.16 on, which
// have no ILIKE: case-insensitive matching uses lowerUTF8 on both sides,
// positionCaseInsensitiveUTF8, and RE2 match() with (?i).
type ClickHouse struct{}

var _ Dialect = ClickHouse{}

// chListMin is the length from which lists of values collapse into one
// IN list or one regular expression, so that rules with thousands of
// values stay far below max_query_size (262,144 bytes).
const chListMin = 4

func (ClickHouse) Name() store.Dialect { return store.ClickHouse }

func (ClickHouse) Ident(name string) string {
	if plainIdent(name) {
		return name
	}
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// String quotes s for ClickHouse with store.ClickHouseString, the one
// escaping function for ClickHouse values.
func (ClickHouse) String(s string) string { return store.ClickHouseString(s) }

func (ClickHouse) Bool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (ClickHouse) Text(expr string) string   { return "toString(" + expr + ")" }
func (ClickHouse) Number(expr string) string { return "toFloat64OrNull(" + expr + ")" }

func (d ClickHouse) MatchAny(expr string, ps []Pattern, cased bool) string {
	var (
		items    []string
		exact    []string // literal values, lowered unless cased
		contains []string // literal substrings
	)
	for _, p := range ps {
		if !p.HasDash() {
			switch shape, lit := p.Shape(); shape {
			case "exact":
				if !cased {
					lit = strings.ToLower(lit)
				}
				exact = append(exact, lit)
				continue
			case "contains":
				contains = append(contains, lit)
				continue
			}
		}
		items = append(items, d.match(expr, p, cased))
	}
	lhs := expr
	if !cased {
		lhs = "lowerUTF8(" + expr + ")"
	}
	switch {
	case len(exact) >= chListMin:
		lits := make([]string, len(exact))
		for i, v := range exact {
			lits[i] = d.String(v)
		}
		items = append(items, lhs+" IN ("+strings.Join(lits, ", ")+")")
	default:
		for _, v := range exact {
			items = append(items, lhs+" = "+d.String(v))
		}
	}
	switch {
	case len(contains) >= chListMin:
		items = append(items, d.Regexp(expr, alternation(contains), regexFlags(cased)))
	default:
		for _, v := range contains {
			if cased {
				items = append(items, "position("+expr+", "+d.String(v)+") > 0")
			} else {
				items = append(items, "positionCaseInsensitiveUTF8("+expr+", "+d.String(v)+") > 0")
			}
		}
	}
	return orSQL(items)
}

func (d ClickHouse) match(expr string, p Pattern, cased bool) string {
	if p.HasDash() {
		return d.Regexp(expr, p.Regex(), regexFlags(cased))
	}
	shape, lit := p.Shape()
	if cased {
		switch shape {
		case "prefix":
			return "startsWith(" + expr + ", " + d.String(lit) + ")"
		case "suffix":
			return "endsWith(" + expr + ", " + d.String(lit) + ")"
		}
		return expr + " LIKE " + d.String(p.Like())
	}
	switch shape {
	case "prefix":
		return "startsWith(lowerUTF8(" + expr + "), lowerUTF8(" + d.String(lit) + "))"
	case "suffix":
		return "endsWith(lowerUTF8(" + expr + "), lowerUTF8(" + d.String(lit) + "))"
	}
	return "lowerUTF8(" + expr + ") LIKE lowerUTF8(" + d.String(p.Like()) + ")"
}

// Regexp wraps the expression in a group carrying the flags. ClickHouse
// 18.16 looks for a required literal before running RE2 and ignores a
// leading "(?i)" when it does (match('ABC', '(?i)abc') is 0), and its '.'
// matches newlines by default: "(?i-s:abc)" is right on both counts.
func (d ClickHouse) Regexp(expr, re, flags string) string {
	if !strings.Contains(flags, "s") {
		flags += "-s"
	}
	return "match(" + expr + ", " + d.String("(?"+flags+":"+re+")") + ")"
}

func (ClickHouse) Compare(op, a, b string, cased bool) string {
	if !cased {
		a, b = "lowerUTF8("+a+")", "lowerUTF8("+b+")"
	}
	switch op {
	case "prefix":
		return "startsWith(" + a + ", " + b + ")"
	case "suffix":
		return "endsWith(" + a + ", " + b + ")"
	case "contains":
		return "position(" + a + ", " + b + ") > 0"
	}
	return a + " = " + b
}

func (ClickHouse) DatePart(unit, expr string) string {
	switch unit {
	case "minute":
		return "toMinute(" + expr + ")"
	case "hour":
		return "toHour(" + expr + ")"
	case "day":
		return "toDayOfMonth(" + expr + ")"
	case "week":
		return "toISOWeek(" + expr + ")"
	case "month":
		return "toMonth(" + expr + ")"
	}
	return "toYear(" + expr + ")"
}

// IPv6Hex uses the server's parser after dropping a zone id ("%eth0");
// IPv6StringToNum gives zeros for text that is not an IPv6 address, so
// only text with ':' is considered.
func (ClickHouse) IPv6Hex(expr string) string {
	return "if(position(" + expr + ", ':') > 0, lower(hex(IPv6StringToNum(splitByChar('%', assumeNotNull(" + expr + "))[1]))), '')"
}
