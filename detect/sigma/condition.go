package sigma

import "strings"

// Condition grammar, loosest first:
//
//	expr    = and { "or" and }
//	and     = not { "and" not }
//	not     = "not" not | primary
//	primary = "(" expr ")" | ("1" | "any" | "all") "of" (pattern | "them") | identifier

type condToken struct {
	text string
	off  int // byte offset in the condition string
}

func lexCondition(src string) []condToken {
	var out []condToken
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '|':
			out = append(out, condToken{string(c), i})
			i++
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n\r()|", rune(src[j])) {
				j++
			}
			out = append(out, condToken{src[i:j], i})
			i = j
		}
	}
	return out
}

type condParser struct {
	file string
	src  string
	at   Pos // where src starts in the file
	toks []condToken
	i    int
	det  *Detection
}

func parseCondition(file, src string, at Pos, det *Detection) (CondExpr, error) {
	p := &condParser{file: file, src: src, at: at, toks: lexCondition(src), det: det}
	if len(p.toks) == 0 {
		return nil, p.errAt(len(src), "empty condition")
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.text == "|" {
			return nil, errorf(file, p.posOf(t.off), KindUnsupported,
				"aggregation expressions (\"| count() ...\") are not supported; write a correlation rule")
		}
		return nil, p.errAt(t.off, "unexpected %q in condition", t.text)
	}
	return e, nil
}

// posOf maps a byte offset in the condition to a file position. Multi-line
// (folded) conditions are located by line only approximately.
func (p *condParser) posOf(off int) Pos {
	line, col := p.at.Line, p.at.Col
	for i := 0; i < off && i < len(p.src); i++ {
		if p.src[i] == '\n' {
			line++
			col = 1
			continue
		}
		col++
	}
	return Pos{Line: line, Col: col}
}

func (p *condParser) errAt(off int, format string, args ...any) *Error {
	return errorf(p.file, p.posOf(off), KindSyntax, format, args...)
}

func (p *condParser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i].text)
	}
	return ""
}

func (p *condParser) endOff() int { return len(p.src) }

func (p *condParser) or() (CondExpr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = CondOr{L: l, R: r}
	}
	return l, nil
}

func (p *condParser) and() (CondExpr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" {
		p.i++
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = CondAnd{L: l, R: r}
	}
	return l, nil
}

func (p *condParser) not() (CondExpr, error) {
	if p.peek() == "not" {
		p.i++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return CondNot{X: x}, nil
	}
	return p.primary()
}

func (p *condParser) primary() (CondExpr, error) {
	if p.i >= len(p.toks) {
		return nil, p.errAt(p.endOff(), "condition ends too early: expected a search identifier")
	}
	t := p.toks[p.i]
	low := strings.ToLower(t.text)
	switch low {
	case "(":
		p.i++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			off := p.endOff()
			if p.i < len(p.toks) {
				off = p.toks[p.i].off
			}
			return nil, p.errAt(off, "missing \")\" to close \"(\" at column %d", p.posOf(t.off).Col)
		}
		p.i++
		return e, nil
	case ")":
		return nil, p.errAt(t.off, "unexpected \")\"")
	case "and", "or", "not", "of", "them", "|":
		return nil, p.errAt(t.off, "expected a search identifier, found %q", t.text)
	}
	if p.i+1 < len(p.toks) && strings.ToLower(p.toks[p.i+1].text) == "of" {
		var all bool
		switch low {
		case "1", "any":
		case "all":
			all = true
		default:
			return nil, errorf(p.file, p.posOf(t.off), KindUnsupported, "%q of: only \"1 of\" and \"all of\" are defined", t.text)
		}
		p.i += 2
		if p.i >= len(p.toks) {
			return nil, p.errAt(p.endOff(), "expected a pattern or \"them\" after \"of\"")
		}
		pt := p.toks[p.i]
		p.i++
		of := CondOf{All: all, Pos: p.posOf(t.off)}
		if strings.ToLower(pt.text) == "them" {
			if len(p.det.themNames()) == 0 {
				return nil, p.errAt(pt.off, "\"them\" matches no search identifier (names starting with _ are skipped)")
			}
			return of, nil
		}
		if strings.ContainsAny(pt.text, "()") {
			return nil, p.errAt(pt.off, "expected a pattern after \"of\", found %q", pt.text)
		}
		of.Pattern = pt.text
		if len(p.det.matchNames(of.Pattern)) == 0 {
			return nil, p.errAt(pt.off, "pattern %q matches no search identifier", pt.text)
		}
		return of, nil
	}
	p.i++
	if strings.ContainsAny(t.text, "*?[") {
		return nil, p.errAt(t.off, "wildcard %q needs \"1 of\" or \"all of\" before it", t.text)
	}
	if _, ok := p.det.Searches[t.text]; !ok {
		msg := "unknown search identifier " + quote(t.text)
		if s := suggest(t.text, p.det.Names); s != "" {
			msg += " (did you mean " + quote(s) + "?)"
		}
		return nil, p.errAt(t.off, "%s", msg)
	}
	return CondRef{Name: t.text, Pos: p.posOf(t.off)}, nil
}

func quote(s string) string { return `"` + s + `"` }

// themNames are the identifiers "them" stands for: all except those
// starting with an underscore.
func (d *Detection) themNames() []string {
	var out []string
	for _, n := range d.Names {
		if !strings.HasPrefix(n, "_") {
			out = append(out, n)
		}
	}
	return out
}

// matchNames returns the identifiers matching a "1 of" pattern, where *
// matches any run of characters.
func (d *Detection) matchNames(pattern string) []string {
	var out []string
	for _, n := range d.Names {
		if globMatch(pattern, n) {
			out = append(out, n)
		}
	}
	return out
}

// globMatch matches a "1 of" pattern, where only '*' is a wildcard.
func globMatch(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(name, mid)
		if i < 0 {
			return false
		}
		name = name[i+len(mid):]
	}
	return len(name) >= len(last) && strings.HasSuffix(name, last)
}
