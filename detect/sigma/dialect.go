package sigma

import (
	"fmt"
	"strings"

	"github.com/vigilhq/vigil/store"
)

// Dialect renders the few SQL constructs that differ between stores.
// Everything a rule author wrote reaches SQL through String (values) or
// from the schema through Ident (names); no other method may embed text
// from a rule except through those two.
type Dialect interface {
	Name() store.Dialect
	// Ident renders a column or table name taken from the schema.
	Ident(name string) string
	// String renders a string literal. It is the one escaping function of
	// the dialect.
	String(s string) string
	// Bool renders a boolean constant.
	Bool(b bool) string
	// Text converts a non-text column to text; Number converts a text
	// expression to a number or NULL.
	Text(expr string) string
	Number(expr string) string
	// MatchAny is true when expr matches any of the patterns, case
	// insensitively unless cased. NULL when expr is NULL.
	MatchAny(expr string, ps []Pattern, cased bool) string
	// Regexp is true when the RE2 expression re matches part of expr;
	// flags is a subset of "ims" with RE2's meaning ('.' matches a newline
	// only with s).
	Regexp(expr, re, flags string) string
	// Compare compares two text expressions (a field reference) with op
	// one of "exact", "prefix", "suffix", "contains".
	Compare(op, a, b string, cased bool) string
	// DatePart extracts minute, hour, day, week, month or year from a
	// timestamp expression.
	DatePart(unit, expr string) string
	// IPv6Hex renders the 32 lowercase hex digits of the IPv6 address in
	// expr, or NULL (or a value matching no prefix) when it is not one.
	IPv6Hex(expr string) string
}

// DialectFor returns the dialect of a store.
func DialectFor(d store.Dialect) (Dialect, error) {
	switch d {
	case store.DuckDB, "":
		return DuckDB{}, nil
	case store.ClickHouse:
		return ClickHouse{}, nil
	}
	return nil, fmt.Errorf("sigma: unknown SQL dialect %q", d)
}

// plainIdent reports whether name needs no quoting in either dialect.
func plainIdent(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return !sqlKeywords[name]
}

// sqlKeywords are DuckDB's reserved, type/function and column-name
// keywords (duckdb_keywords()) and a few of ClickHouse's: columns with
// these names are quoted.
var sqlKeywords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "anti": true, "any": true,
	"array": true, "as": true, "asc": true, "asof": true, "asymmetric": true, "at": true,
	"authorization": true, "between": true, "bigint": true, "binary": true, "bit": true,
	"boolean": true, "both": true, "by": true, "case": true, "cast": true, "char": true,
	"character": true, "check": true, "coalesce": true, "collate": true, "collation": true,
	"column": true, "columns": true, "concurrently": true, "constraint": true, "create": true,
	"cross": true, "dec": true, "decimal": true, "default": true, "deferrable": true, "desc": true,
	"describe": true, "distinct": true, "do": true, "else": true, "end": true, "except": true,
	"exists": true, "extract": true, "false": true, "fetch": true, "final": true, "float": true,
	"for": true, "foreign": true, "format": true, "freeze": true, "from": true, "full": true,
	"generated": true, "glob": true, "global": true, "group": true, "grouping": true,
	"grouping_id": true, "having": true, "ilike": true, "in": true, "initially": true, "inner": true,
	"inout": true, "int": true, "integer": true, "intersect": true, "interval": true, "into": true,
	"is": true, "isnull": true, "join": true, "lambda": true, "lateral": true, "leading": true,
	"left": true, "like": true, "limit": true, "map": true, "national": true, "natural": true,
	"nchar": true, "none": true, "not": true, "notnull": true, "null": true, "nullif": true,
	"numeric": true, "offset": true, "on": true, "only": true, "or": true, "order": true, "out": true,
	"outer": true, "overlaps": true, "overlay": true, "pivot": true, "pivot_longer": true,
	"pivot_wider": true, "placing": true, "position": true, "positional": true, "precision": true,
	"prewhere": true, "primary": true, "qualify": true, "real": true, "references": true,
	"returning": true, "right": true, "row": true, "sample": true, "select": true, "semi": true,
	"setof": true, "settings": true, "show": true, "similar": true, "smallint": true, "some": true,
	"struct": true, "substring": true, "summarize": true, "symmetric": true, "table": true,
	"tablesample": true, "then": true, "time": true, "timestamp": true, "to": true, "trailing": true,
	"treat": true, "trim": true, "true": true, "try_cast": true, "union": true, "unique": true,
	"unpack": true, "unpivot": true, "user": true, "using": true, "values": true, "varchar": true,
	"variadic": true, "verbose": true, "when": true, "where": true, "window": true, "with": true,
	"xmlattributes": true, "xmlconcat": true, "xmlelement": true, "xmlexists": true,
	"xmlforest": true, "xmlnamespaces": true, "xmlparse": true, "xmlpi": true, "xmlroot": true,
	"xmlserialize": true, "xmltable": true,
}

// DuckDB is the dialect of the embedded store.
type DuckDB struct{}

var _ Dialect = DuckDB{}

func (DuckDB) Name() store.Dialect { return store.DuckDB }

func (DuckDB) Ident(name string) string {
	if plainIdent(name) {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// String quotes s for DuckDB: standard SQL literals have no backslash
// escapes, so doubling quotes is the whole job. Compile rejects NUL and
// invalid UTF-8 before values get here.
func (DuckDB) String(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (DuckDB) Bool(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (DuckDB) Text(expr string) string   { return "CAST(" + expr + " AS VARCHAR)" }
func (DuckDB) Number(expr string) string { return "TRY_CAST(" + expr + " AS DOUBLE)" }

// Regexp passes the flags inline: RE2's (?m) has no equivalent among
// regexp_matches' options (whose 'm' means newline-sensitive).
func (d DuckDB) Regexp(expr, re, flags string) string {
	if flags != "" {
		re = "(?" + flags + ")" + re
	}
	return "regexp_matches(" + expr + ", " + d.String(re) + ")"
}

func (d DuckDB) Compare(op, a, b string, cased bool) string {
	if !cased {
		a, b = "lower("+a+")", "lower("+b+")"
	}
	switch op {
	case "prefix":
		return "starts_with(" + a + ", " + b + ")"
	case "suffix":
		return "ends_with(" + a + ", " + b + ")"
	case "contains":
		return "contains(" + a + ", " + b + ")"
	}
	return a + " = " + b
}

func (DuckDB) DatePart(unit, expr string) string {
	switch unit {
	case "day":
		return "dayofmonth(" + expr + ")"
	case "week":
		return "weekofyear(" + expr + ")"
	}
	return unit + "(" + expr + ")"
}

// IPv6Hex expands "::" and pads each group to four digits, so that CIDR
// ranges become prefixes of a canonical form. Zone ids ("%eth0") are
// dropped. Text without ':' gives NULL; IPv4-mapped addresses give a form
// that only ::ffff:0:0/96 matches. Single-element lists bind the halves
// and groups once instead of repeating the expression.
func (DuckDB) IPv6Hex(expr string) string {
	groups := func(x string) string {
		return "CASE WHEN " + x + " IS NULL OR " + x + " = '' THEN []::VARCHAR[] ELSE string_split(" + x + ", ':') END"
	}
	pad := func(list string) string {
		return "array_to_string(list_transform(" + list + ", lambda x: lpad(x, 4, '0')), '')"
	}
	return "CASE WHEN contains(" + expr + ", ':') THEN " +
		"list_transform([string_split(lower(split_part(" + expr + ", '%', 1)), '::')], lambda h: " +
		"list_transform([[" + groups("h[1]") + ", " + groups("h[2]") + "]], lambda g: " +
		pad("g[1]") + " || repeat('0000', CASE WHEN len(h) > 1 THEN 8 - len(g[1]) - len(g[2]) ELSE 0 END) || " + pad("g[2]") +
		")[1])[1] END"
}

func orSQL(items []string) string  { return joinSQL(items, " OR ") }
func andSQL(items []string) string { return joinSQL(items, " AND ") }

func joinSQL(items []string, op string) string {
	switch len(items) {
	case 0:
		if op == " AND " {
			return "true"
		}
		return "false"
	case 1:
		return items[0]
	}
	return "(" + strings.Join(items, op) + ")"
}

// notSQL negates treating NULL (an absent field) as "does not match", so
// that "selection and not filter" keeps events where the filter's field
// is NULL.
func notSQL(d Dialect, x string) string { return "NOT coalesce(" + x + ", " + d.Bool(false) + ")" }

// regexFlags are the flags of a pattern rendered as a regular expression:
// wildcards span lines, and case is ignored unless cased.
func regexFlags(cased bool) string {
	if cased {
		return "s"
	}
	return "is"
}
