package table

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// This file parses osquery's specs/*.table files (a small Python subset:
// calls, keyword arguments, lists, strings, identifiers joined by +) so the
// conformance test can compare our schemas with the source of truth.

type specColumn struct {
	Name, Type, Collate     string
	Hidden, Required, Index bool
	Platforms               []string // nil: base schema; else extended_schema platforms
}

type specTable struct {
	Name    string
	Columns []specColumn
	Event   bool
}

// linuxColumns returns the columns that apply on Linux: the base schema and
// every extended_schema naming LINUX or POSIX.
func (s specTable) linuxColumns() []specColumn {
	var out []specColumn
	for _, c := range s.Columns {
		if c.Platforms == nil {
			out = append(out, c)
			continue
		}
		for _, p := range c.Platforms {
			if p == "LINUX" || p == "POSIX" {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

type specTokKind int

const (
	tEOF specTokKind = iota
	tIdent
	tString
	tNumber
	tPunct
)

type specTok struct {
	kind specTokKind
	text string
	line int
}

func specLex(src string) ([]specTok, error) {
	var toks []specTok
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\\':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			start := line
			q := string(c)
			if strings.HasPrefix(src[i:], strings.Repeat(q, 3)) {
				end := strings.Index(src[i+3:], strings.Repeat(q, 3))
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated triple-quoted string", start)
				}
				s := src[i+3 : i+3+end]
				line += strings.Count(s, "\n")
				toks = append(toks, specTok{tString, s, start})
				i += 6 + end
				continue
			}
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\n' {
					return nil, fmt.Errorf("line %d: newline in string", start)
				}
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated string", start)
			}
			toks = append(toks, specTok{tString, b.String(), start})
			i = j + 1
		case c == '_' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			toks = append(toks, specTok{tIdent, src[i:j], line})
			i = j
		case c >= '0' && c <= '9' || c == '-':
			j := i + 1
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == 'x') {
				j++
			}
			toks = append(toks, specTok{tNumber, src[i:j], line})
			i = j
		case strings.IndexByte("()[],=+:{}", c) >= 0:
			toks = append(toks, specTok{tPunct, string(c), line})
			i++
		default:
			return nil, fmt.Errorf("line %d: unexpected character %q", line, c)
		}
	}
	return append(toks, specTok{tEOF, "", line}), nil
}

// specVal is a parsed expression: a string, identifier(s), number, list or
// call.
type specVal struct {
	kind   string // "str", "ident", "num", "list", "call", "dict"
	str    string
	idents []string // for ident: a + b + c
	list   []specVal
	call   *specCall
	line   int
}

type specCall struct {
	name   string
	args   []specVal
	kwargs map[string]specVal
	line   int
}

type specParser struct {
	toks []specTok
	pos  int
}

func (p *specParser) peek() specTok { return p.toks[p.pos] }
func (p *specParser) next() specTok {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *specParser) expect(punct string) error {
	t := p.next()
	if t.kind != tPunct || t.text != punct {
		return fmt.Errorf("line %d: want %q, got %q", t.line, punct, t.text)
	}
	return nil
}

func (p *specParser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tPunct && t.text == s
}

func (p *specParser) args(closer string) ([]specVal, map[string]specVal, error) {
	var args []specVal
	kw := map[string]specVal{}
	for !p.isPunct(closer) {
		if p.peek().kind == tEOF {
			return nil, nil, fmt.Errorf("line %d: unexpected end of file, want %q", p.peek().line, closer)
		}
		if p.peek().kind == tIdent && p.toks[p.pos+1].kind == tPunct && p.toks[p.pos+1].text == "=" {
			name := p.next().text
			p.next()
			v, err := p.expr()
			if err != nil {
				return nil, nil, err
			}
			kw[name] = v
		} else {
			v, err := p.expr()
			if err != nil {
				return nil, nil, err
			}
			args = append(args, v)
		}
		if p.isPunct(",") {
			p.next()
			continue
		}
		if !p.isPunct(closer) {
			t := p.peek()
			if t.kind == tEOF {
				return nil, nil, fmt.Errorf("line %d: unexpected end of file, want %q", t.line, closer)
			}
			return nil, nil, fmt.Errorf("line %d: want \",\" or %q, got %q", t.line, closer, t.text)
		}
	}
	p.next()
	return args, kw, nil
}

func (p *specParser) expr() (specVal, error) {
	v, err := p.term()
	if err != nil {
		return v, err
	}
	for p.isPunct("+") {
		p.next()
		w, err := p.term()
		if err != nil {
			return v, err
		}
		if v.kind != "ident" || w.kind != "ident" {
			return v, fmt.Errorf("line %d: + joins identifiers only", w.line)
		}
		v.idents = append(v.idents, w.idents...)
	}
	return v, nil
}

func (p *specParser) term() (specVal, error) {
	t := p.next()
	switch t.kind {
	case tString:
		s := t.text
		for p.peek().kind == tString { // implicit concatenation
			s += p.next().text
		}
		return specVal{kind: "str", str: s, line: t.line}, nil
	case tNumber:
		return specVal{kind: "num", str: t.text, line: t.line}, nil
	case tIdent:
		if p.isPunct("(") {
			p.next()
			args, kw, err := p.args(")")
			if err != nil {
				return specVal{}, err
			}
			return specVal{kind: "call", call: &specCall{name: t.text, args: args, kwargs: kw, line: t.line}, line: t.line}, nil
		}
		return specVal{kind: "ident", idents: []string{t.text}, line: t.line}, nil
	case tPunct:
		switch t.text {
		case "(": // parenthesised expression or tuple
			args, kw, err := p.args(")")
			if err != nil {
				return specVal{}, err
			}
			if len(kw) > 0 {
				return specVal{}, fmt.Errorf("line %d: keyword argument in parentheses", t.line)
			}
			if len(args) == 1 {
				return args[0], nil
			}
			return specVal{kind: "list", list: args, line: t.line}, nil
		case "[":
			args, kw, err := p.args("]")
			if err != nil {
				return specVal{}, err
			}
			if len(kw) > 0 {
				return specVal{}, fmt.Errorf("line %d: keyword argument in a list", t.line)
			}
			return specVal{kind: "list", list: args, line: t.line}, nil
		case "{":
			// dicts appear in a few specs' attributes; skip their content.
			depth := 1
			for depth > 0 {
				u := p.next()
				if u.kind == tEOF {
					return specVal{}, fmt.Errorf("line %d: unterminated {", t.line)
				}
				if u.kind == tPunct && u.text == "{" {
					depth++
				} else if u.kind == tPunct && u.text == "}" {
					depth--
				}
			}
			return specVal{kind: "dict", line: t.line}, nil
		}
	}
	return specVal{}, fmt.Errorf("line %d: unexpected %q", t.line, t.text)
}

func parseSpec(src string) (specTable, error) {
	toks, err := specLex(src)
	if err != nil {
		return specTable{}, err
	}
	p := &specParser{toks: toks}
	var st specTable
	for p.peek().kind != tEOF {
		v, err := p.term()
		if err != nil {
			return specTable{}, err
		}
		if v.kind != "call" {
			return specTable{}, fmt.Errorf("line %d: want a call at top level", v.line)
		}
		c := v.call
		switch c.name {
		case "table_name":
			if len(c.args) < 1 || c.args[0].kind != "str" {
				return specTable{}, fmt.Errorf("line %d: table_name wants a string", c.line)
			}
			st.Name = c.args[0].str
		case "schema", "extended_schema":
			var plats []string
			list := 0
			if c.name == "extended_schema" {
				if len(c.args) != 2 || c.args[0].kind != "ident" {
					return specTable{}, fmt.Errorf("line %d: extended_schema wants (PLATFORM, [...])", c.line)
				}
				plats, list = c.args[0].idents, 1
			}
			if len(c.args) <= list || c.args[list].kind != "list" {
				return specTable{}, fmt.Errorf("line %d: %s wants a list of columns", c.line, c.name)
			}
			for _, item := range c.args[list].list {
				if item.kind != "call" {
					return specTable{}, fmt.Errorf("line %d: want Column(...)", item.line)
				}
				if item.call.name != "Column" {
					continue // ForeignKey
				}
				col, err := specColumnOf(item.call)
				if err != nil {
					return specTable{}, err
				}
				col.Platforms = plats
				st.Columns = append(st.Columns, col)
			}
		case "attributes":
			if v, ok := c.kwargs["event_subscriber"]; ok && v.kind == "ident" && v.idents[0] == "True" {
				st.Event = true
			}
		}
	}
	if st.Name == "" {
		return specTable{}, fmt.Errorf("no table_name")
	}
	return st, nil
}

func specColumnOf(c *specCall) (specColumn, error) {
	if len(c.args) < 2 || c.args[0].kind != "str" || c.args[1].kind != "ident" {
		return specColumn{}, fmt.Errorf("line %d: Column wants (name, TYPE, ...)", c.line)
	}
	col := specColumn{Name: c.args[0].str, Type: c.args[1].idents[0]}
	flag := func(k string) bool {
		v, ok := c.kwargs[k]
		return ok && v.kind == "ident" && v.idents[0] == "True"
	}
	col.Hidden, col.Required, col.Index = flag("hidden"), flag("required"), flag("index")
	if v, ok := c.kwargs["collate"]; ok && v.kind == "str" {
		col.Collate = v.str
	}
	return col, nil
}

// specDir finds ../shared/reference/osquery/specs relative to the
// repository root.
func specDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			dir := filepath.Join(d, "..", "shared", "reference", "osquery", "specs")
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("osquery specs not found at %s (the shared reference data is missing): %v", dir, err)
			}
			return dir
		}
		if filepath.Dir(d) == d {
			t.Skip("repository root (go.mod) not found from " + wd)
		}
	}
}

// loadSpecs parses every spec file that can apply to Linux, keyed by table
// name.
func loadSpecs(t testing.TB) map[string]specTable {
	dir := specDir(t)
	out := map[string]specTable{}
	skipDirs := map[string]bool{"darwin": true, "windows": true, "macwin": true, "freebsd": true, "lldpd": true, "smart": true, "yara": true, "kernel": true}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skipDirs[d.Name()] {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".table") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, err := parseSpec(string(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out[st.Name] = st
		return nil
	})
	if err != nil {
		t.Fatalf("parsing specs: %v", err)
	}
	return out
}
