package sigma

import "github.com/vigilhq/vigil"

// DocKind says what a YAML document of a rule file is.
type DocKind int

// Document kinds.
const (
	KindRule        DocKind = iota // a detection rule
	KindCorrelation                // a correlation rule over other rules
	KindFilter                     // a meta filter applied to other rules
)

// Rule is one parsed Sigma document: a detection rule, a correlation or a
// filter. Fields follow the specification's names.
type Rule struct {
	File string // as given to Parse, for messages
	Pos  Pos    // where the document starts
	Kind DocKind

	Title          string
	ID             string
	Name           string
	Status         string
	Description    string
	Author         string
	Date           string
	Modified       string
	License        string
	Taxonomy       string // field naming scheme; "" is the default, sigma
	Level          vigil.Level
	Tags           []string
	References     []string
	FalsePositives []string
	Fields         []string
	Logsource      Logsource

	Detection   *Detection   // KindRule
	Correlation *Correlation // KindCorrelation
	Filter      *Filter      // KindFilter
}

// Logsource selects the events a rule applies to.
type Logsource struct {
	Category   string
	Product    string
	Service    string
	Definition string
	Pos        Pos
}

// Detection is a rule's detection section: named searches and the
// condition over them.
type Detection struct {
	Searches   map[string]*Search
	Names      []string     // search identifiers in file order
	Conditions []*Condition // several conditions are OR-ed
	Timeframe  string       // legacy; only correlations use time windows
}

// Search is one search identifier.
type Search struct {
	Name string
	Pos  Pos
	Expr Expr
}

// Condition is one condition string and its parsed form.
type Condition struct {
	Src  string
	Pos  Pos
	Expr CondExpr
}

// Expr is a node of a search: And, Or or *Match.
type Expr interface{ exprNode() }

// And is true when every item is (a map of field matches).
type And struct{ Items []Expr }

// Or is true when any item is (a list of maps, or of keywords).
type Or struct{ Items []Expr }

// Match compares one field (Field "" for a keyword search) with values,
// through modifiers.
type Match struct {
	Pos       Pos
	Field     string
	Modifiers []Modifier
	Values    []Value
}

func (And) exprNode()    {}
func (Or) exprNode()     {}
func (*Match) exprNode() {}

// Modifier is one value modifier as written after a '|'.
type Modifier struct {
	Name string
	Pos  Pos
}

// ValueKind is the YAML type of a value.
type ValueKind int

// Value kinds.
const (
	ValString ValueKind = iota
	ValNumber
	ValBool
	ValNull
)

// Value is one value of a match, as written in YAML.
type Value struct {
	Pos  Pos
	Kind ValueKind
	Raw  string // the scalar's text (for strings, after YAML unquoting)
}

// CondExpr is a node of a parsed condition.
type CondExpr interface{ condNode() }

// CondAnd, CondOr and CondNot are the boolean operators of conditions.
type (
	CondAnd struct{ L, R CondExpr }
	CondOr  struct{ L, R CondExpr }
	CondNot struct{ X CondExpr }
	// CondRef names one search identifier.
	CondRef struct {
		Name string
		Pos  Pos
	}
	// CondOf is "1 of pattern", "all of pattern", "1 of them" or
	// "all of them"; Pattern is "" for them.
	CondOf struct {
		All     bool
		Pattern string
		Pos     Pos
	}
)

func (CondAnd) condNode() {}
func (CondOr) condNode()  {}
func (CondNot) condNode() {}
func (CondRef) condNode() {}
func (CondOf) condNode()  {}
