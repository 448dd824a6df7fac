package sigma

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/schema"
)

// Matches whose modifiers give the value a type: exists, re, numbers and
// times, cidr, fieldref; and keyword searches.

func (c *compiler) exists(m *Match, ident string) (string, error) {
	if len(m.Values) != 1 {
		return "", c.errAt(m.Pos, KindSyntax, "exists takes one value, true or false")
	}
	v := m.Values[0]
	switch strings.ToLower(v.Raw) {
	case "true":
		return ident + " IS NOT NULL", nil
	case "false":
		return ident + " IS NULL", nil
	}
	return "", c.errAt(v.Pos, KindSyntax, "exists takes true or false, not %q", v.Raw)
}

func (c *compiler) textExpr(col schema.Column, ident string) string {
	if col.Type == schema.Text {
		return ident
	}
	return c.d.Text(ident)
}

func (c *compiler) regexps(m *Match, ms modset, col schema.Column, ident string) (string, error) {
	expr := c.textExpr(col, ident)
	flags := ms.reFlags
	var items []string
	for _, v := range m.Values {
		if v.Kind == ValNull {
			return "", c.errAt(v.Pos, KindSyntax, "re needs a regular expression, not null")
		}
		if _, err := regexp.Compile(v.Raw); err != nil {
			return "", c.errAt(v.Pos, KindSyntax, "invalid regular expression %q: %s", v.Raw, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		items = append(items, c.d.Regexp(expr, v.Raw, flags))
	}
	return c.join(ms, items), nil
}

func (c *compiler) numeric(m *Match, ms modset, col schema.Column, ident string) (string, error) {
	expr := ident
	switch {
	case ms.timePart != "":
		if col.Type != schema.Timestamp {
			return "", c.errAt(m.Pos, KindUnsupported, "modifier %q needs a timestamp column; %s is %s", ms.timePart, col.Name, col.Type)
		}
		expr = c.d.DatePart(ms.timePart, ident)
	case col.Type == schema.Text:
		expr = c.d.Number(ident)
	case col.Type == schema.BigInt || col.Type == schema.Double:
	default:
		return "", c.errAt(m.Pos, KindUnsupported, "modifier %q needs a numeric column; %s is %s", ms.compare, col.Name, col.Type)
	}
	op := map[string]string{"": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[ms.compare]
	var items []string
	for _, v := range m.Values {
		f, err := strconv.ParseFloat(strings.TrimSpace(v.Raw), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || v.Kind == ValNull || v.Kind == ValBool {
			return "", c.errAt(v.Pos, KindSyntax, "%q is not a number", v.Raw)
		}
		items = append(items, expr+" "+op+" "+strconv.FormatFloat(f, 'g', -1, 64))
	}
	return c.join(ms, items), nil
}

func (c *compiler) cidrs(m *Match, ms modset, col schema.Column, ident string) (string, error) {
	expr := c.textExpr(col, ident)
	var items []string
	for _, v := range m.Values {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(v.Raw))
		if err != nil {
			addr, aerr := netip.ParseAddr(strings.TrimSpace(v.Raw))
			if aerr != nil {
				return "", c.errAt(v.Pos, KindSyntax, "invalid CIDR range %q", v.Raw)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		prefix = prefix.Masked()
		if prefix.Addr().Is4() {
			items = append(items, c.d.MatchAny(expr, ipv4Patterns(prefix), true))
		} else {
			items = append(items, c.d.MatchAny(c.d.IPv6Hex(expr), ipv6Patterns(prefix), true))
		}
	}
	return c.join(ms, items), nil
}

// ipv4Patterns covers an IPv4 range with dotted-decimal patterns: whole
// octets as text, the partial octet enumerated (at most 128 patterns).
func ipv4Patterns(p netip.Prefix) []Pattern {
	b := p.Addr().As4()
	bits := p.Bits()
	if bits == 32 {
		return []Pattern{LiteralPattern(p.Addr().String())}
	}
	if bits == 0 {
		return []Pattern{ParseString("*.*.*.*")}
	}
	full, rem := bits/8, bits%8
	head := func(n int) string {
		parts := make([]string, n)
		for i := 0; i < n; i++ {
			parts[i] = strconv.Itoa(int(b[i]))
		}
		return strings.Join(parts, ".")
	}
	if rem == 0 {
		return []Pattern{LiteralPattern(head(full) + ".").withSuffixAny()}
	}
	var out []Pattern
	count := 1 << (8 - rem)
	for v := int(b[full]); v < int(b[full])+count; v++ {
		s := strconv.Itoa(v)
		if full > 0 {
			s = head(full) + "." + s
		}
		if full == 3 {
			out = append(out, LiteralPattern(s))
		} else {
			out = append(out, LiteralPattern(s+".").withSuffixAny())
		}
	}
	return out
}

// ipv6Patterns covers an IPv6 range with prefixes of the 32-digit hex
// form that Dialect.IPv6Hex produces.
func ipv6Patterns(p netip.Prefix) []Pattern {
	b := p.Addr().As16()
	hex := fmt.Sprintf("%x", b[:])
	bits := p.Bits()
	if bits == 128 {
		return []Pattern{LiteralPattern(hex)}
	}
	full, rem := bits/4, bits%4
	if rem == 0 {
		return []Pattern{LiteralPattern(hex[:full]).withSuffixAny()}
	}
	var out []Pattern
	d, _ := strconv.ParseUint(hex[full:full+1], 16, 8)
	for v := d; v < d+1<<(4-rem); v++ {
		out = append(out, LiteralPattern(hex[:full]+strconv.FormatUint(v, 16)).withSuffixAny())
	}
	return out
}

func (c *compiler) fieldrefs(m *Match, ms modset, col schema.Column, ident string) (string, error) {
	a := c.textExpr(col, ident)
	op := map[string]string{"": "exact", "contains": "contains", "startswith": "prefix", "endswith": "suffix"}[ms.place]
	var items []string
	for _, v := range m.Values {
		if v.Kind != ValString {
			return "", c.errAt(v.Pos, KindSyntax, "fieldref needs a field name, not %q", v.Raw)
		}
		other, err := c.column(v.Raw, v.Pos)
		if err != nil {
			return "", err
		}
		b := c.textExpr(other, c.d.Ident(other.Name))
		items = append(items, c.d.Compare(op, a, b, ms.cased))
	}
	return c.join(ms, items), nil
}

// keywords searches every text column of the table for each value.
func (c *compiler) keywords(m *Match, ms modset) (string, error) {
	if ms.typ != "" || ms.compare != "" || ms.timePart != "" {
		return "", c.errAt(m.Pos, KindSyntax, "keyword searches take only string modifiers")
	}
	cols := c.m.KeywordColumns(c.table)
	if len(cols) == 0 {
		return "", c.errAt(m.Pos, KindUnmapped, "table %s has no text columns for keyword searches", c.table.Name)
	}
	groups, err := c.patterns(m, ms)
	if err != nil {
		return "", err
	}
	// A keyword is found anywhere in a column unless the rule placed it.
	if ms.place == "" {
		for _, g := range groups {
			for i, p := range g {
				g[i] = p.withPrefixAny().withSuffixAny()
			}
		}
	}
	anyCol := func(ps []Pattern) string {
		items := make([]string, 0, len(cols))
		for _, col := range cols {
			items = append(items, c.d.MatchAny(c.d.Ident(col.Name), ps, ms.cased))
		}
		return orSQL(items)
	}
	if !ms.all {
		var all []Pattern
		for _, g := range groups {
			all = append(all, g...)
		}
		return anyCol(all), nil
	}
	items := make([]string, 0, len(groups))
	for _, g := range groups {
		items = append(items, anyCol(g))
	}
	return andSQL(items), nil
}
