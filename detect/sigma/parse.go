package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil"
)

// Parse reads every YAML document of a rule file. Each document becomes a
// Rule or an error naming file, line and column; a bad document does not
// stop the others. file is only used in messages.
func Parse(file string, data []byte) ([]*Rule, []error) {
	var (
		rules []*Rule
		errs  []error
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// yaml.v3 cannot resume after a syntax error.
			errs = append(errs, yamlError(file, err))
			break
		}
		if len(doc.Content) == 0 {
			continue // empty document (e.g. a trailing "---")
		}
		p := &parser{file: file}
		r, err := p.rule(doc.Content[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rules = append(rules, r)
	}
	return rules, errs
}

// ParseOne parses a file that must hold exactly one rule.
func ParseOne(file string, data []byte) (*Rule, error) {
	rules, errs := Parse(file, data)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if len(rules) != 1 {
		return nil, errorf(file, Pos{}, KindSyntax, "want one rule in the file, found %d", len(rules))
	}
	return rules[0], nil
}

// yamlError turns yaml.v3's "yaml: line 3: ..." into our positioned form.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return errorf(file, Pos{Line: line}, KindSyntax, "invalid YAML: %s", msg)
}

type parser struct {
	file string
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

func (p *parser) errf(n *yaml.Node, kind Kind, format string, args ...any) *Error {
	var at Pos
	if n != nil {
		at = pos(n)
	}
	return errorf(p.file, at, kind, format, args...)
}

// mapping returns the key/value pairs of a mapping node, rejecting
// duplicate keys (YAML forbids them; yaml.v3 does not check for Nodes).
func (p *parser) mapping(n *yaml.Node, what string) ([][2]*yaml.Node, error) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, KindSyntax, "%s must be a mapping, not %s", what, kindName(n))
	}
	seen := map[string]bool{}
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, p.errf(k, KindSyntax, "%s: keys must be strings", what)
		}
		if seen[k.Value] {
			return nil, p.errf(k, KindSyntax, "%s: duplicate key %q", what, k.Value)
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return deref(n.Content[0])
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "this"
	}
}

func (p *parser) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, KindSyntax, "%s must be a string, not %s", what, kindName(n))
	}
	return n.Value, nil
}

// strs accepts a list of strings, or one string as a list of one.
func (p *parser) strs(n *yaml.Node, what string) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, KindSyntax, "%s must be a list of strings, not %s", what, kindName(n))
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		c = deref(c)
		s, err := p.str(c, what)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

var levels = []string{"informational", "low", "medium", "high", "critical"}

func (p *parser) rule(root *yaml.Node) (*Rule, error) {
	root = deref(root)
	pairs, err := p.mapping(root, "a Sigma document")
	if err != nil {
		return nil, err
	}
	r := &Rule{File: p.file, Pos: pos(root)}
	var detection, correlation, filter, logsource *yaml.Node
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		var err error
		switch k.Value {
		case "title":
			r.Title, err = p.str(v, "title")
		case "id":
			r.ID, err = p.str(v, "id")
		case "name":
			r.Name, err = p.str(v, "name")
		case "status":
			r.Status, err = p.str(v, "status")
		case "description":
			r.Description, err = p.str(v, "description")
		case "author":
			r.Author, err = p.str(v, "author")
		case "date":
			r.Date, err = p.str(v, "date")
		case "modified":
			r.Modified, err = p.str(v, "modified")
		case "license":
			r.License, err = p.str(v, "license")
		case "taxonomy":
			r.Taxonomy, err = p.str(v, "taxonomy")
		case "level":
			var s string
			s, err = p.str(v, "level")
			if err == nil {
				if !contains(levels, s) {
					err = p.errf(v, KindSyntax, "unknown level %q (want one of %s)", s, strings.Join(levels, ", "))
				}
				r.Level = vigil.Level(s)
			}
		case "tags":
			r.Tags, err = p.strs(v, "tags")
		case "references":
			r.References, err = p.strs(v, "references")
		case "falsepositives":
			r.FalsePositives, err = p.strs(v, "falsepositives")
		case "fields":
			r.Fields, err = p.strs(v, "fields")
		case "logsource":
			logsource = v
		case "detection":
			detection = v
		case "correlation":
			correlation = v
		case "filter":
			filter = v
		}
		if err != nil {
			return nil, err
		}
	}
	if r.Title == "" {
		return nil, p.errf(root, KindSyntax, "missing title")
	}
	if logsource != nil {
		if r.Logsource, err = p.logsource(logsource); err != nil {
			return nil, err
		}
	}
	switch {
	case correlation != nil:
		if detection != nil || filter != nil {
			return nil, p.errf(correlation, KindSyntax, "a correlation rule has no detection or filter section")
		}
		r.Kind = KindCorrelation
		r.Correlation, err = p.correlation(correlation)
	case filter != nil:
		if detection != nil {
			return nil, p.errf(filter, KindSyntax, "a filter has no detection section")
		}
		if logsource == nil {
			return nil, p.errf(root, KindSyntax, "missing logsource")
		}
		r.Kind = KindFilter
		r.Filter, err = p.filter(filter)
	case detection != nil:
		if logsource == nil {
			return nil, p.errf(root, KindSyntax, "missing logsource")
		}
		r.Kind = KindRule
		r.Detection, err = p.detection(detection)
	default:
		return nil, p.errf(root, KindSyntax, "missing detection (or correlation, or filter) section")
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) logsource(n *yaml.Node) (Logsource, error) {
	ls := Logsource{Pos: pos(n)}
	pairs, err := p.mapping(n, "logsource")
	if err != nil {
		return ls, err
	}
	for _, kv := range pairs {
		var s string
		if kv[1].Kind == yaml.ScalarNode && kv[1].Tag != "!!null" {
			s = kv[1].Value
		}
		switch kv[0].Value {
		case "category":
			ls.Category = s
		case "product":
			ls.Product = s
		case "service":
			ls.Service = s
		case "definition":
			ls.Definition = s
		}
	}
	if ls.Category == "" && ls.Product == "" && ls.Service == "" {
		return ls, p.errf(n, KindSyntax, "logsource needs a category, product or service")
	}
	return ls, nil
}

func (p *parser) detection(n *yaml.Node) (*Detection, error) {
	pairs, err := p.mapping(n, "detection")
	if err != nil {
		return nil, err
	}
	d := &Detection{Searches: map[string]*Search{}}
	var cond *yaml.Node
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "condition":
			cond = v
			continue
		case "timeframe":
			if d.Timeframe, err = p.str(v, "timeframe"); err != nil {
				return nil, err
			}
			continue
		}
		s, err := p.search(k, v)
		if err != nil {
			return nil, err
		}
		d.Searches[k.Value] = s
		d.Names = append(d.Names, k.Value)
	}
	if cond == nil {
		return nil, p.errf(n, KindSyntax, "detection has no condition")
	}
	if len(d.Names) == 0 {
		return nil, p.errf(n, KindSyntax, "detection has no search identifiers")
	}
	var conds []*yaml.Node
	switch cond.Kind {
	case yaml.ScalarNode:
		conds = []*yaml.Node{cond}
	case yaml.SequenceNode:
		if len(cond.Content) == 0 {
			return nil, p.errf(cond, KindSyntax, "condition list is empty")
		}
		for _, c := range cond.Content {
			conds = append(conds, deref(c))
		}
	default:
		return nil, p.errf(cond, KindSyntax, "condition must be a string or a list of strings")
	}
	for _, c := range conds {
		src, err := p.str(c, "condition")
		if err != nil {
			return nil, err
		}
		expr, err := parseCondition(p.file, src, scalarStart(c), d)
		if err != nil {
			return nil, err
		}
		d.Conditions = append(d.Conditions, &Condition{Src: src, Pos: pos(c), Expr: expr})
	}
	return d, nil
}

// scalarStart is the position of a scalar's first character of content,
// so that condition errors point into the condition text.
func scalarStart(n *yaml.Node) Pos {
	p := pos(n)
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		p.Col++
	}
	return p
}

func (p *parser) search(k, v *yaml.Node) (*Search, error) {
	s := &Search{Name: k.Value, Pos: pos(k)}
	// Identifiers are not otherwise restricted: SigmaHQ has one named
	// "select_tree_execution|endswith", reachable through "1 of select*".
	if strings.ContainsAny(k.Value, " \t()") || k.Value == "" {
		return nil, p.errf(k, KindSyntax, "invalid search identifier %q", k.Value)
	}
	var err error
	switch v.Kind {
	case yaml.MappingNode:
		s.Expr, err = p.fieldMap(v)
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, p.errf(v, KindSyntax, "search %q is an empty list", k.Value)
		}
		// A list of maps is an OR of the maps; a list of plain values is a
		// keyword search (also an OR). Mixed lists are OR-ed item by item.
		var items []Expr
		var keywords []*yaml.Node
		for _, c := range v.Content {
			c = deref(c)
			switch c.Kind {
			case yaml.MappingNode:
				e, err := p.fieldMap(c)
				if err != nil {
					return nil, err
				}
				items = append(items, e)
			case yaml.ScalarNode:
				keywords = append(keywords, c)
			default:
				return nil, p.errf(c, KindSyntax, "search %q: list items must be maps or values, not %s", k.Value, kindName(c))
			}
		}
		if len(keywords) > 0 {
			m, err := p.match(v, "", nil, keywords)
			if err != nil {
				return nil, err
			}
			items = append(items, m)
		}
		s.Expr = orOf(items)
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, p.errf(v, KindSyntax, "search %q is empty", k.Value)
		}
		s.Expr, err = p.match(v, "", nil, []*yaml.Node{v})
	default:
		return nil, p.errf(v, KindSyntax, "search %q must be a map or a list", k.Value)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func orOf(items []Expr) Expr {
	if len(items) == 1 {
		return items[0]
	}
	return Or{Items: items}
}

func (p *parser) fieldMap(n *yaml.Node) (Expr, error) {
	pairs, err := p.mapping(n, "a search")
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, p.errf(n, KindSyntax, "empty map in a search")
	}
	var items []Expr
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		field, mods, err := p.fieldSpec(k)
		if err != nil {
			return nil, err
		}
		var vals []*yaml.Node
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []*yaml.Node{v}
		case yaml.SequenceNode:
			if len(v.Content) == 0 {
				return nil, p.errf(v, KindSyntax, "field %q has an empty list of values", field)
			}
			for _, c := range v.Content {
				c = deref(c)
				if c.Kind != yaml.ScalarNode {
					return nil, p.errf(c, KindSyntax, "field %q: values must be plain values, not %s", field, kindName(c))
				}
				if c.Tag == "!!null" {
					return nil, p.errf(c, KindSyntax, "field %q: null cannot be part of a list of values; put it in its own search", field)
				}
				vals = append(vals, c)
			}
		default:
			return nil, p.errf(v, KindSyntax, "field %q: value must be a value or a list of values, not %s", field, kindName(v))
		}
		m, err := p.match(k, field, mods, vals)
		if err != nil {
			return nil, err
		}
		items = append(items, m)
	}
	if len(items) == 1 {
		return items[0], nil
	}
	return And{Items: items}, nil
}

// fieldSpec splits "Field|mod1|mod2" and checks the modifier names.
func (p *parser) fieldSpec(k *yaml.Node) (string, []Modifier, error) {
	parts := strings.Split(k.Value, "|")
	field := parts[0]
	var mods []Modifier
	col := k.Column + len(field) + 1
	if k.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		col++
	}
	for _, m := range parts[1:] {
		at := Pos{Line: k.Line, Col: col}
		col += len(m) + 1
		if !knownModifier(m) {
			msg := fmt.Sprintf("unknown modifier %q", m)
			if s := suggest(m, modifierNames()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return "", nil, errorf(p.file, at, KindSyntax, "%s", msg)
		}
		mods = append(mods, Modifier{Name: m, Pos: at})
	}
	if strings.ContainsAny(field, " \t") {
		return "", nil, p.errf(k, KindSyntax, "field name %q contains spaces", field)
	}
	return field, mods, nil
}

func (p *parser) match(at *yaml.Node, field string, mods []Modifier, vals []*yaml.Node) (*Match, error) {
	m := &Match{Pos: pos(at), Field: field, Modifiers: mods}
	for _, v := range vals {
		val := Value{Pos: pos(v), Raw: v.Value}
		switch v.Tag {
		case "!!null":
			val.Kind = ValNull
		case "!!int", "!!float":
			val.Kind = ValNumber
		case "!!bool":
			val.Kind = ValBool
		case "!!str", "!!timestamp", "":
			val.Kind = ValString
		default:
			return nil, p.errf(v, KindSyntax, "unsupported YAML tag %s", v.Tag)
		}
		m.Values = append(m.Values, val)
	}
	return m, nil
}
