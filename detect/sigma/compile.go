package sigma

import (
	"encoding/base64"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vigilhq/vigil/schema"
)

// Query is a compiled detection rule: a boolean SQL expression over the
// columns of one event table.
type Query struct {
	Table string
	Where string
}

// Options configure compilation.
type Options struct {
	// Dialect renders SQL; nil means DuckDB.
	Dialect Dialect
	// Mapping resolves logsources and fields; nil means the schema
	// package's tables (see SchemaMapping).
	Mapping Mapping
	// Placeholders are the values of %name% placeholders for the expand
	// modifier. A placeholder with no entry fails the rule, as the
	// specification requires.
	Placeholders map[string][]string
	// Collection holds the filters applied to rules and the rules
	// correlations refer to; nil means none.
	Collection *Collection
}

// Compile turns a detection rule into a query.
func Compile(r *Rule, opts Options) (Query, error) {
	if r.Kind != KindRule || r.Detection == nil {
		return Query{}, errorf(r.File, r.Pos, KindSyntax, "%q is not a detection rule", r.Title)
	}
	c, err := newCompiler(r, opts)
	if err != nil {
		return Query{}, err
	}
	where, err := c.detection(r.Detection)
	if err != nil {
		return Query{}, err
	}
	// Meta filters are AND-ed to the rule's condition, as pySigma does.
	for _, f := range opts.Collection.filtersFor(r) {
		fc := c.sub(f, f.Filter.Detection)
		fw, err := fc.detection(f.Filter.Detection)
		if err != nil {
			return Query{}, err
		}
		where = andSQL([]string{where, fw})
	}
	return Query{Table: c.table.Name, Where: where}, nil
}

// sub is a compiler for another detection (a filter's) over the same
// table; errors name the other document's file.
func (c *compiler) sub(r *Rule, det *Detection) *compiler {
	return &compiler{r: r, det: det, d: c.d, m: c.m, opts: c.opts, table: c.table, searches: map[string]string{}}
}

type compiler struct {
	r        *Rule
	det      *Detection
	d        Dialect
	m        Mapping
	opts     Options
	table    schema.Table
	searches map[string]string
}

func newCompiler(r *Rule, opts Options) (*compiler, error) {
	c := &compiler{r: r, det: r.Detection, d: opts.Dialect, m: opts.Mapping, opts: opts, searches: map[string]string{}}
	if c.d == nil {
		c.d = DuckDB{}
	}
	if c.m == nil {
		c.m = SchemaMapping{}
	}
	t, ok := c.m.Table(r.Logsource)
	if !ok {
		err := c.errAt(r.Logsource.Pos, KindUnmapped, "no event table for logsource %s", r.Logsource)
		err.noTable = true
		return nil, err
	}
	c.table = t
	return c, nil
}

func (ls Logsource) String() string {
	var parts []string
	if ls.Product != "" {
		parts = append(parts, "product "+quote(ls.Product))
	}
	if ls.Category != "" {
		parts = append(parts, "category "+quote(ls.Category))
	}
	if ls.Service != "" {
		parts = append(parts, "service "+quote(ls.Service))
	}
	return strings.Join(parts, ", ")
}

func (c *compiler) errAt(p Pos, kind Kind, format string, args ...any) *Error {
	return errorf(c.r.File, p, kind, format, args...)
}

func (c *compiler) detection(d *Detection) (string, error) {
	var conds []string
	for _, cond := range d.Conditions {
		s, err := c.cond(cond.Expr)
		if err != nil {
			return "", err
		}
		conds = append(conds, s)
	}
	return orSQL(conds), nil
}

func (c *compiler) cond(e CondExpr) (string, error) {
	switch e := e.(type) {
	case CondAnd:
		return c.binary(e.L, e.R, andSQL)
	case CondOr:
		return c.binary(e.L, e.R, orSQL)
	case CondNot:
		x, err := c.cond(e.X)
		if err != nil {
			return "", err
		}
		return notSQL(c.d, x), nil
	case CondRef:
		return c.search(e.Name)
	case CondOf:
		names := c.det.themNames()
		if e.Pattern != "" {
			names = c.det.matchNames(e.Pattern)
		}
		items := make([]string, 0, len(names))
		for _, n := range names {
			s, err := c.search(n)
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		if e.All {
			return andSQL(items), nil
		}
		return orSQL(items), nil
	}
	return "", fmt.Errorf("sigma: unexpected condition node %T", e)
}

func (c *compiler) binary(l, r CondExpr, join func([]string) string) (string, error) {
	a, err := c.cond(l)
	if err != nil {
		return "", err
	}
	b, err := c.cond(r)
	if err != nil {
		return "", err
	}
	return join([]string{a, b}), nil
}

func (c *compiler) search(name string) (string, error) {
	if s, ok := c.searches[name]; ok {
		return s, nil
	}
	s, err := c.expr(c.det.Searches[name].Expr)
	if err != nil {
		return "", err
	}
	c.searches[name] = s
	return s, nil
}

func (c *compiler) expr(e Expr) (string, error) {
	switch e := e.(type) {
	case And:
		return c.list(e.Items, andSQL)
	case Or:
		return c.list(e.Items, orSQL)
	case *Match:
		return c.match(e)
	}
	return "", fmt.Errorf("sigma: unexpected search node %T", e)
}

func (c *compiler) list(items []Expr, join func([]string) string) (string, error) {
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := c.expr(it)
		if err != nil {
			return "", err
		}
		out = append(out, s)
	}
	return join(out), nil
}

// column resolves a Sigma field of the rule's table.
func (c *compiler) column(field string, at Pos) (schema.Column, error) {
	col, ok := c.m.Column(c.table, field)
	if !ok {
		msg := fmt.Sprintf("field %q has no column in table %s", field, c.table.Name)
		if tx := c.r.Taxonomy; tx != "" && tx != "sigma" {
			// The mapping names fields as the sigma taxonomy does.
			msg += fmt.Sprintf(" (the rule uses taxonomy %q; the mapping knows sigma field names)", tx)
		}
		if s := suggest(field, c.m.Fields(c.table)); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return schema.Column{}, c.errAt(at, KindUnmapped, "%s", msg)
	}
	return col, nil
}

func (c *compiler) match(m *Match) (string, error) {
	ms, err := c.modifiers(m)
	if err != nil {
		return "", err
	}
	var out string
	if m.Field == "" {
		out, err = c.keywords(m, ms)
	} else {
		out, err = c.fieldMatch(m, ms)
	}
	if err != nil {
		return "", err
	}
	if ms.neq {
		out = notSQL(c.d, out)
	}
	return out, nil
}

func (c *compiler) join(ms modset, items []string) string {
	if ms.all {
		return andSQL(items)
	}
	return orSQL(items)
}

func (c *compiler) fieldMatch(m *Match, ms modset) (string, error) {
	col, err := c.column(m.Field, m.Pos)
	if err != nil {
		return "", err
	}
	ident := c.d.Ident(col.Name)
	// null stands alone (the parser keeps it out of lists).
	if len(m.Values) == 1 && m.Values[0].Kind == ValNull {
		if len(m.Modifiers) > 0 && !(len(m.Modifiers) == 1 && ms.neq) {
			return "", c.errAt(m.Values[0].Pos, KindSyntax, "null takes no modifiers")
		}
		return ident + " IS NULL", nil
	}
	switch ms.typ {
	case "exists":
		return c.exists(m, ident)
	case "re":
		return c.regexps(m, ms, col, ident)
	case "cidr":
		return c.cidrs(m, ms, col, ident)
	case "fieldref":
		return c.fieldrefs(m, ms, col, ident)
	}
	if ms.compare != "" || ms.timePart != "" {
		return c.numeric(m, ms, col, ident)
	}
	groups, err := c.patterns(m, ms)
	if err != nil {
		return "", err
	}
	if !ms.all {
		var all []Pattern
		for _, g := range groups {
			all = append(all, g...)
		}
		return c.patternMatch(col, ident, all, ms.cased), nil
	}
	items := make([]string, 0, len(groups))
	for _, g := range groups {
		items = append(items, c.patternMatch(col, ident, g, ms.cased))
	}
	return andSQL(items), nil
}

// patternMatch matches a column against patterns, comparing numbers and
// booleans as such when the column has that type and the value is one.
func (c *compiler) patternMatch(col schema.Column, ident string, ps []Pattern, cased bool) string {
	if col.Type == schema.Text {
		return c.d.MatchAny(ident, ps, cased)
	}
	var typed []string
	var rest []Pattern
	for _, p := range ps {
		lit, ok := p.Literal()
		if ok && !p.HasDash() {
			if s, ok := typedLiteral(col.Type, lit, c.d); ok {
				typed = append(typed, ident+" = "+s)
				continue
			}
		}
		rest = append(rest, p)
	}
	if len(rest) > 0 {
		typed = append(typed, c.d.MatchAny(c.d.Text(ident), rest, cased))
	}
	return orSQL(typed)
}

// typedLiteral renders lit as a constant of the column's type when it is
// one; the output is produced by strconv, never copied from the rule.
func typedLiteral(t schema.Type, lit string, d Dialect) (string, bool) {
	switch t {
	case schema.BigInt:
		n, err := strconv.ParseInt(strings.TrimSpace(lit), 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	case schema.Double:
		f, err := strconv.ParseFloat(strings.TrimSpace(lit), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	case schema.Bool:
		switch strings.ToLower(lit) {
		case "true":
			return d.Bool(true), true
		case "false":
			return d.Bool(false), true
		}
	}
	return "", false
}

// patterns applies expansion and transformation modifiers: one group of
// alternative patterns per value.
func (c *compiler) patterns(m *Match, ms modset) ([][]Pattern, error) {
	groups := make([][]Pattern, 0, len(m.Values))
	for _, v := range m.Values {
		if v.Kind == ValNull {
			return nil, c.errAt(v.Pos, KindSyntax, "null cannot be combined with other values or modifiers")
		}
		raws := []string{v.Raw}
		if ms.expand {
			var err error
			if raws, err = c.expand(v); err != nil {
				return nil, err
			}
		}
		var ps []Pattern
		for _, raw := range raws {
			ps = append(ps, ParseString(raw))
		}
		for _, t := range ms.transforms {
			var err error
			if ps, err = c.transform(t, v, ps); err != nil {
				return nil, err
			}
		}
		for _, p := range ps {
			if err := c.checkText(v.Pos, p); err != nil {
				return nil, err
			}
		}
		groups = append(groups, ps)
	}
	return groups, nil
}

func (c *compiler) transform(t Modifier, v Value, ps []Pattern) ([]Pattern, error) {
	out := make([]Pattern, 0, len(ps))
	for _, p := range ps {
		switch t.Name {
		case "contains":
			out = append(out, p.withPrefixAny().withSuffixAny())
			continue
		case "startswith":
			out = append(out, p.withSuffixAny())
			continue
		case "endswith":
			out = append(out, p.withPrefixAny())
			continue
		case "windash":
			out = append(out, p.windash())
			continue
		}
		lit, ok := p.Literal()
		if !ok || p.HasDash() {
			return nil, c.errAt(t.Pos, KindSyntax, "modifier %q cannot encode wildcards in %q; put contains, startswith or endswith after it", t.Name, v.Raw)
		}
		switch t.Name {
		case "base64":
			out = append(out, LiteralPattern(base64.StdEncoding.EncodeToString([]byte(lit))))
		case "base64offset":
			for _, s := range base64Offsets(lit) {
				out = append(out, LiteralPattern(s))
			}
		case "utf16le", "wide":
			out = append(out, LiteralPattern(utf16Bytes(lit, false, false)))
		case "utf16be":
			out = append(out, LiteralPattern(utf16Bytes(lit, true, false)))
		case "utf16":
			out = append(out, LiteralPattern(utf16Bytes(lit, false, true)))
		default:
			return nil, c.errAt(t.Pos, KindUnsupported, "modifier %q is not supported here", t.Name)
		}
	}
	return out, nil
}

// checkText rejects values a text column can never hold, such as UTF-16
// bytes not followed by a base64 modifier.
func (c *compiler) checkText(at Pos, p Pattern) error {
	for _, x := range p.parts {
		if x.kind != partLit {
			continue
		}
		if !utf8.ValidString(x.s) || strings.IndexByte(x.s, 0) >= 0 {
			return c.errAt(at, KindSyntax, "value is not text after its modifiers (utf16 and wide need base64 or base64offset after them)")
		}
	}
	return nil
}

var placeholderRE = regexp.MustCompile(`%[A-Za-z0-9_.-]+%`)

// expand replaces %name% placeholders by every configured value. A
// backslash before '%' keeps it literal.
func (c *compiler) expand(v Value) ([]string, error) {
	raw := v.Raw
	results := []string{""}
	for len(raw) > 0 {
		if strings.HasPrefix(raw, `\%`) {
			for i := range results {
				results[i] += "%"
			}
			raw = raw[2:]
			continue
		}
		if loc := placeholderRE.FindStringIndex(raw); loc != nil && loc[0] == 0 {
			name := raw[1 : loc[1]-1]
			vals, ok := c.opts.Placeholders[name]
			if !ok || len(vals) == 0 {
				return nil, c.errAt(v.Pos, KindUnsupported, "placeholder %%%s%% has no configured values", name)
			}
			next := make([]string, 0, len(results)*len(vals))
			for _, r := range results {
				for _, pv := range vals {
					next = append(next, r+pv)
				}
			}
			results = next
			raw = raw[loc[1]:]
			continue
		}
		_, size := utf8.DecodeRuneInString(raw)
		for i := range results {
			results[i] += raw[:size]
		}
		raw = raw[size:]
	}
	return results, nil
}

// SelectSQL is the query a store runs for a compiled rule: every column
// of the matching events.
func SelectSQL(d Dialect, q Query) string {
	if d == nil {
		d = DuckDB{}
	}
	return "SELECT * FROM " + d.Ident(q.Table) + " WHERE " + q.Where
}
