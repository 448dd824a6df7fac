package sigma

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Correlation types of sigma-correlation-rules-specification.md.
const (
	EventCount      = "event_count"
	ValueCount      = "value_count"
	Temporal        = "temporal"
	TemporalOrdered = "temporal_ordered"
	ValueSum        = "value_sum"
	ValueAvg        = "value_avg"
	ValuePercentile = "value_percentile"
)

var correlationTypes = []string{EventCount, ValueCount, Temporal, TemporalOrdered, ValueSum, ValueAvg, ValuePercentile}

// Correlation is a correlation rule's correlation section.
type Correlation struct {
	Pos       Pos
	Type      string
	Rules     []string // ids or names of rules or correlations
	RulesPos  []Pos
	GroupBy   []string
	Timespan  time.Duration
	Condition []Threshold // all must hold; empty for temporal means "every rule"
	Field     string      // value_count and value_* types
	// Aliases maps an alias to the field it stands for in each rule
	// (by rule name).
	Aliases  map[string]map[string]string
	Generate bool
}

// Threshold is one criterion of a correlation condition.
type Threshold struct {
	Op    string // gt, gte, lt, lte, eq, neq
	Value float64
}

// Filter is a meta filter: its detection is AND-ed to the condition of
// every rule it names (or every rule of its logsource with "any").
type Filter struct {
	Pos       Pos
	Rules     []string
	Any       bool
	Detection *Detection
}

var timespanRE = regexp.MustCompile(`^([0-9]+)([smhd])$`)

func (p *parser) correlation(n *yaml.Node) (*Correlation, error) {
	pairs, err := p.mapping(n, "correlation")
	if err != nil {
		return nil, err
	}
	c := &Correlation{Pos: pos(n)}
	var cond, typeNode *yaml.Node
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "type":
			typeNode = v
			if c.Type, err = p.str(v, "correlation type"); err != nil {
				return nil, err
			}
		case "rules":
			if c.Rules, err = p.strs(v, "correlation rules"); err != nil {
				return nil, err
			}
			if v.Kind == yaml.SequenceNode {
				for _, x := range v.Content {
					c.RulesPos = append(c.RulesPos, pos(x))
				}
			} else {
				c.RulesPos = append(c.RulesPos, pos(v))
			}
		case "group-by":
			if c.GroupBy, err = p.strs(v, "group-by"); err != nil {
				return nil, err
			}
		case "timespan":
			s, err := p.str(v, "timespan")
			if err != nil {
				return nil, err
			}
			m := timespanRE.FindStringSubmatch(s)
			if m == nil {
				return nil, p.errf(v, KindSyntax, "timespan %q: want a number and s, m, h or d (like 90m)", s)
			}
			num, err := strconv.ParseInt(m[1], 10, 32)
			if err != nil || num <= 0 {
				return nil, p.errf(v, KindSyntax, "timespan %q is out of range", s)
			}
			unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
			c.Timespan = time.Duration(num) * unit
		case "condition":
			cond = v
		case "aliases":
			if c.Aliases, err = p.aliases(v); err != nil {
				return nil, err
			}
		case "generate":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return nil, p.errf(v, KindSyntax, "generate must be true or false")
			}
			c.Generate = v.Value == "true"
		default:
			return nil, p.errf(k, KindSyntax, "unknown correlation attribute %q", k.Value)
		}
	}
	switch {
	case typeNode == nil:
		return nil, p.errf(n, KindSyntax, "correlation has no type")
	case !contains(correlationTypes, c.Type):
		msg := fmt.Sprintf("unknown correlation type %q", c.Type)
		if s := suggest(c.Type, correlationTypes); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return nil, p.errf(typeNode, KindSyntax, "%s", msg)
	case len(c.Rules) == 0:
		return nil, p.errf(n, KindSyntax, "correlation has no rules")
	case c.Timespan == 0:
		return nil, p.errf(n, KindSyntax, "correlation has no timespan")
	}
	if cond != nil {
		if err := p.thresholds(cond, c); err != nil {
			return nil, err
		}
	}
	switch c.Type {
	case Temporal, TemporalOrdered:
		if c.Field != "" {
			return nil, p.errf(cond, KindSyntax, "%s correlations take no field", c.Type)
		}
	case EventCount:
		if len(c.Condition) == 0 {
			return nil, p.errf(n, KindSyntax, "%s correlation needs a condition", c.Type)
		}
		if c.Field != "" {
			return nil, p.errf(cond, KindSyntax, "event_count correlations take no field")
		}
	default:
		if len(c.Condition) == 0 || c.Field == "" {
			return nil, p.errf(n, KindSyntax, "%s correlation needs a condition with a field", c.Type)
		}
	}
	return c, nil
}

func (p *parser) thresholds(n *yaml.Node, c *Correlation) error {
	pairs, err := p.mapping(n, "correlation condition")
	if err != nil {
		return err
	}
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "field":
			fields, err := p.strs(v, "condition field")
			if err != nil {
				return err
			}
			if len(fields) != 1 {
				return p.errf(v, KindUnsupported, "only one condition field is supported")
			}
			c.Field = fields[0]
		case "gt", "gte", "lt", "lte", "eq", "neq":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return p.errf(v, KindSyntax, "condition %s needs a number, not %s", k.Value, kindName(v))
			}
			c.Condition = append(c.Condition, Threshold{Op: k.Value, Value: f})
		default:
			return p.errf(k, KindSyntax, "unknown condition operator %q (want gt, gte, lt, lte, eq or neq)", k.Value)
		}
	}
	return nil
}

func (p *parser) aliases(n *yaml.Node) (map[string]map[string]string, error) {
	pairs, err := p.mapping(n, "aliases")
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, kv := range pairs {
		inner, err := p.mapping(kv[1], "alias "+kv[0].Value)
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		for _, rv := range inner {
			s, err := p.str(rv[1], "alias field")
			if err != nil {
				return nil, err
			}
			m[rv[0].Value] = s
		}
		out[kv[0].Value] = m
	}
	return out, nil
}

func (p *parser) filter(n *yaml.Node) (*Filter, error) {
	pairs, err := p.mapping(n, "filter")
	if err != nil {
		return nil, err
	}
	f := &Filter{Pos: pos(n)}
	// The rest of the section is a detection: searches and a condition.
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column, Tag: "!!map"}
	var rulesNode *yaml.Node
	for _, kv := range pairs {
		if kv[0].Value == "rules" {
			rulesNode = kv[1]
			continue
		}
		rest.Content = append(rest.Content, kv[0], kv[1])
	}
	if rulesNode == nil {
		return nil, p.errf(n, KindSyntax, "filter has no rules")
	}
	if rulesNode.Kind == yaml.ScalarNode && strings.EqualFold(rulesNode.Value, "any") {
		f.Any = true
	} else if f.Rules, err = p.strs(rulesNode, "filter rules"); err != nil {
		return nil, err
	} else if len(f.Rules) == 0 {
		return nil, p.errf(rulesNode, KindSyntax, "filter rules is empty")
	}
	if f.Detection, err = p.detection(rest); err != nil {
		return nil, err
	}
	return f, nil
}

// Collection is a set of rules that refer to each other: correlations
// name rules, filters name the rules they tune.
type Collection struct {
	rules   []*Rule
	byRef   map[string]*Rule
	filters []*Rule
}

// NewCollection indexes rules by id and name. Duplicate ids or names are
// errors; the first one wins.
func NewCollection(rules []*Rule) (*Collection, []error) {
	c := &Collection{byRef: map[string]*Rule{}}
	var errs []error
	for _, r := range rules {
		dup := false
		for _, key := range []string{r.ID, r.Name} {
			if key == "" {
				continue
			}
			if old, ok := c.byRef[key]; ok && old != r {
				errs = append(errs, errorf(r.File, r.Pos, KindSyntax, "%q is already the id or name of %q (%s)", key, old.Title, old.File))
				dup = true
				continue
			}
			c.byRef[key] = r
		}
		if dup {
			continue
		}
		c.rules = append(c.rules, r)
		if r.Kind == KindFilter {
			c.filters = append(c.filters, r)
		}
	}
	return c, errs
}

// Rules returns the rules of the collection in the order given.
func (c *Collection) Rules() []*Rule { return c.rules }

// Lookup finds a rule by id or name.
func (c *Collection) Lookup(ref string) (*Rule, bool) {
	r, ok := c.byRef[ref]
	return r, ok
}

// Referenced reports whether a correlation of the collection names r and
// does not ask for its rules to be generated on their own.
func (c *Collection) Referenced(r *Rule) bool {
	for _, x := range c.rules {
		if x.Kind != KindCorrelation || x.Correlation.Generate {
			continue
		}
		for _, ref := range x.Correlation.Rules {
			if ref == r.ID || (r.Name != "" && ref == r.Name) {
				return true
			}
		}
	}
	return false
}

// filtersFor returns the filters that apply to r.
func (c *Collection) filtersFor(r *Rule) []*Rule {
	if c == nil {
		return nil
	}
	var out []*Rule
	for _, f := range c.filters {
		if !logsourceWithin(r.Logsource, f.Logsource) {
			continue
		}
		if f.Filter.Any {
			out = append(out, f)
			continue
		}
		for _, ref := range f.Filter.Rules {
			if ref == r.ID || (r.Name != "" && ref == r.Name) || ref == r.Title {
				out = append(out, f)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// logsourceWithin reports whether every attribute the filter's logsource
// sets has the same value in the rule's.
func logsourceWithin(rule, filter Logsource) bool {
	return (filter.Category == "" || filter.Category == rule.Category) &&
		(filter.Product == "" || filter.Product == rule.Product) &&
		(filter.Service == "" || filter.Service == rule.Service)
}
