package sigma

import (
	"regexp"
	"strings"
)

type partKind uint8

const (
	partLit  partKind = iota // literal text
	partAny                  // Sigma '*': any run of characters
	partOne                  // Sigma '?': exactly one character
	partDash                 // windash: one of - / – — ―
)

type part struct {
	kind partKind
	s    string // partLit only
}

// Pattern is a Sigma string value after value modifiers: literal text and
// wildcards. Dialects render it as LIKE patterns, regular expressions or
// plain literals.
type Pattern struct {
	parts []part
}

// ParseString reads a Sigma string value: '*' and '?' are wildcards, and a
// backslash escapes '*', '?' and itself; any other backslash is literal
// (sigma-rules-specification.md, "Escape Character").
func ParseString(s string) Pattern {
	var p Pattern
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.parts = append(p.parts, part{kind: partLit, s: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\') {
				lit.WriteByte(s[i+1])
				i++
				continue
			}
			lit.WriteByte(c)
		case '*':
			flush()
			p.parts = append(p.parts, part{kind: partAny})
		case '?':
			flush()
			p.parts = append(p.parts, part{kind: partOne})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return p.normal()
}

// LiteralPattern is a pattern matching exactly s.
func LiteralPattern(s string) Pattern {
	if s == "" {
		return Pattern{}
	}
	return Pattern{parts: []part{{kind: partLit, s: s}}}
}

// normal merges adjacent literals and collapses runs of '*'.
func (p Pattern) normal() Pattern {
	out := make([]part, 0, len(p.parts))
	for _, x := range p.parts {
		if x.kind == partLit && x.s == "" {
			continue
		}
		if n := len(out); n > 0 {
			if x.kind == partLit && out[n-1].kind == partLit {
				out[n-1].s += x.s
				continue
			}
			if x.kind == partAny && out[n-1].kind == partAny {
				continue
			}
		}
		out = append(out, x)
	}
	return Pattern{parts: out}
}

func (p Pattern) withPrefixAny() Pattern {
	return Pattern{parts: append([]part{{kind: partAny}}, p.parts...)}.normal()
}

func (p Pattern) withSuffixAny() Pattern {
	return Pattern{parts: append(append([]part(nil), p.parts...), part{kind: partAny})}.normal()
}

// Literal returns the text of a pattern without wildcards.
func (p Pattern) Literal() (string, bool) {
	var b strings.Builder
	for _, x := range p.parts {
		if x.kind != partLit {
			return "", false
		}
		b.WriteString(x.s)
	}
	return b.String(), true
}

// HasDash reports whether the pattern holds windash character classes,
// which only regular expressions can express.
func (p Pattern) HasDash() bool {
	for _, x := range p.parts {
		if x.kind == partDash {
			return true
		}
	}
	return false
}

// Shape classifies a pattern whose only wildcards are a leading and/or
// trailing '*': "exact", "prefix", "suffix", "contains" with its literal
// text; "" otherwise.
func (p Pattern) Shape() (shape, lit string) {
	ps := p.parts
	lead := len(ps) > 0 && ps[0].kind == partAny
	if lead {
		ps = ps[1:]
	}
	trail := len(ps) > 0 && ps[len(ps)-1].kind == partAny
	if trail {
		ps = ps[:len(ps)-1]
	}
	if len(ps) > 1 || (len(ps) == 1 && ps[0].kind != partLit) {
		return "", ""
	}
	if len(ps) == 1 {
		lit = ps[0].s
	}
	switch {
	case lead && trail:
		return "contains", lit
	case lead:
		return "suffix", lit
	case trail:
		return "prefix", lit
	default:
		return "exact", lit
	}
}

// Like renders the pattern for LIKE/ILIKE with '\' as the escape
// character: Sigma wildcards become % and _, and literal %, _ and \ are
// escaped.
func (p Pattern) Like() string {
	var b strings.Builder
	for _, x := range p.parts {
		switch x.kind {
		case partLit:
			for i := 0; i < len(x.s); i++ {
				switch c := x.s[i]; c {
				case '%', '_', '\\':
					b.WriteByte('\\')
					b.WriteByte(c)
				default:
					b.WriteByte(c)
				}
			}
		case partAny:
			b.WriteByte('%')
		case partOne:
			b.WriteByte('_')
		case partDash:
			// Not expressible; callers use Regex for dashed patterns.
			b.WriteByte('_')
		}
	}
	return b.String()
}

// windashClass is the RE2 class windash expands a dash to.
const windashClass = "[-/\u2013\u2014\u2015]"

// Regex renders the pattern as an RE2 expression matching the whole
// value; use it with the s flag so that '*' spans lines.
func (p Pattern) Regex() string {
	var b strings.Builder
	b.WriteString("^")
	for _, x := range p.parts {
		switch x.kind {
		case partLit:
			b.WriteString(regexp.QuoteMeta(x.s))
		case partAny:
			b.WriteString(".*")
		case partOne:
			b.WriteString(".")
		case partDash:
			b.WriteString(windashClass)
		}
	}
	b.WriteString("$")
	return b.String()
}

// String renders the pattern back in Sigma syntax, for messages.
func (p Pattern) String() string {
	var b strings.Builder
	for _, x := range p.parts {
		switch x.kind {
		case partLit:
			b.WriteString(strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(x.s))
		case partAny:
			b.WriteByte('*')
		case partOne:
			b.WriteByte('?')
		case partDash:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// windash replaces every dash-like character of the literal text by the
// windash class.
func (p Pattern) windash() Pattern {
	var out []part
	for _, x := range p.parts {
		if x.kind != partLit {
			out = append(out, x)
			continue
		}
		start := 0
		for i, r := range x.s {
			switch r {
			case '-', '/', '\u2013', '\u2014', '\u2015':
				out = append(out, part{kind: partLit, s: x.s[start:i]}, part{kind: partDash})
				start = i + len(string(r))
			}
		}
		out = append(out, part{kind: partLit, s: x.s[start:]})
	}
	return Pattern{parts: out}.normal()
}
