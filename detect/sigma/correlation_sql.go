package sigma

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/store"
)

// CorrelationQuery is a compiled correlation rule: a complete SELECT whose
// rows are the events at which the correlation holds over its sliding
// window. Columns: event_time, event_id, host_id and hostname of that
// event, group_1 ... group_n (the values of GroupBy, as text), and value
// (the count, sum, average or percentage compared with the condition).
type CorrelationQuery struct {
	SQL      string
	GroupBy  []string
	Tables   []string // event tables read
	Timespan time.Duration

	// BoundedSQL is SQL reading only events at or after a time given as
	// each of its BoundParams parameters (one "?" per rule read). Hits for
	// events at or after T are complete when the bound is T - Lookback,
	// the sum of the timespans of the longest chain of correlations.
	BoundedSQL  string
	BoundParams int
	Lookback    time.Duration
}

// CompileCorrelation compiles a correlation rule; opts.Collection must
// hold the rules it refers to. Correlations chain: a correlation's hits
// are events of the correlations that refer to it.
func CompileCorrelation(r *Rule, opts Options) (CorrelationQuery, error) {
	if r.Kind != KindCorrelation {
		return CorrelationQuery{}, errorf(r.File, r.Pos, KindSyntax, "%q is not a correlation rule", r.Title)
	}
	d := opts.Dialect
	if d == nil {
		d = DuckDB{}
	}
	if opts.Collection == nil {
		return CorrelationQuery{}, errorf(r.File, r.Correlation.Pos, KindSyntax, "correlation needs the rules it refers to (Options.Collection)")
	}
	cols := []string{"event_time", "event_id", "host_id", "hostname"}
	for i := range r.Correlation.GroupBy {
		cols = append(cols, fmt.Sprintf("f_%d AS group_%d", i+1, i+1))
	}
	cols = append(cols, "value")
	var sqls [2]string
	cc := &corrCompiler{opts: opts, d: d, tables: map[string]bool{}, active: map[*Rule]bool{}}
	for i, bounded := range []bool{false, true} {
		cc.bounded, cc.params = bounded, 0
		body, err := cc.correlation(r, r.Correlation.GroupBy, true)
		if err != nil {
			return CorrelationQuery{}, err
		}
		sqls[i] = "SELECT " + strings.Join(cols, ", ") + " FROM (" + body + ") AS hits ORDER BY event_time, event_id"
	}
	q := CorrelationQuery{
		SQL:         sqls[0],
		GroupBy:     append([]string(nil), r.Correlation.GroupBy...),
		Timespan:    r.Correlation.Timespan,
		BoundedSQL:  sqls[1],
		BoundParams: cc.params,
		Lookback:    lookback(r, opts.Collection, 0),
	}
	for t := range cc.tables {
		q.Tables = append(q.Tables, t)
	}
	sortStrings(q.Tables)
	return q, nil
}

type corrCompiler struct {
	opts    Options
	d       Dialect
	tables  map[string]bool
	active  map[*Rule]bool // correlations being compiled, to refuse cycles
	bounded bool           // add "event_time >= ?" to every rule read
	params  int            // "?" written so far
}

// relation selects event_time, event_id, host_id, hostname, sigma_rule
// (= tag) and f_1 ... f_n (fields, as text) from the events or hits of r.
func (cc *corrCompiler) relation(r *Rule, tag string, fields []string, at Pos, from *Rule) (string, error) {
	switch r.Kind {
	case KindRule:
		q, err := Compile(r, cc.opts)
		if err != nil {
			return "", err
		}
		c, err := newCompiler(r, cc.opts)
		if err != nil {
			return "", err
		}
		cc.tables[q.Table] = true
		cols := []string{"event_time", "event_id", "host_id", "hostname", cc.d.String(tag) + " AS sigma_rule"}
		arrays := cc.d.Name() == store.ClickHouse
		if arrays {
			// Lambdas over the event arrays need non-Nullable values.
			cols = []string{"assumeNotNull(event_time) AS event_time", "ifNull(event_id, '') AS event_id",
				"ifNull(host_id, '') AS host_id", "ifNull(hostname, '') AS hostname", cc.d.String(tag) + " AS sigma_rule"}
		}
		for i, f := range fields {
			col, ok := c.m.Column(c.table, f)
			if !ok {
				return "", errorf(from.File, at, KindUnmapped, "field %q of rule %q (%s) has no column in table %s", f, r.Title, r.File, c.table.Name)
			}
			expr := c.textExpr(col, c.d.Ident(col.Name))
			if arrays {
				expr = "ifNull(" + expr + ", '')"
			}
			cols = append(cols, expr+fmt.Sprintf(" AS f_%d", i+1))
		}
		where := "(" + q.Where + ")"
		if cc.bounded {
			where += " AND event_time >= ?"
			cc.params++
		}
		return "SELECT " + strings.Join(cols, ", ") + " FROM " + cc.d.Ident(q.Table) + " WHERE " + where, nil
	case KindCorrelation:
		body, err := cc.correlation(r, fields, false)
		if err != nil {
			return "", err
		}
		return "SELECT event_time, event_id, host_id, hostname, " + cc.d.String(tag) + " AS sigma_rule" + fieldList(len(fields)) + " FROM (" + body + ") AS hits", nil
	}
	return "", errorf(from.File, at, KindSyntax, "%q is a filter; correlations refer to rules", r.Title)
}

// lookback is the sum of the timespans along the longest chain of
// correlations from r (cycles are refused when compiling).
func lookback(r *Rule, coll *Collection, depth int) time.Duration {
	if r.Kind != KindCorrelation || depth > 64 {
		return 0
	}
	var longest time.Duration
	for _, ref := range r.Correlation.Rules {
		if t, ok := coll.Lookup(ref); ok {
			longest = max(longest, lookback(t, coll, depth+1))
		}
	}
	return r.Correlation.Timespan + longest
}

func fieldList(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, ", f_%d", i)
	}
	return b.String()
}

// correlation returns the hits of r: event_time, event_id, host_id,
// hostname and f_1 ... f_n for the needed fields (and value when
// withValue).
func (cc *corrCompiler) correlation(r *Rule, needed []string, withValue bool) (string, error) {
	c := r.Correlation
	if cc.active[r] {
		return "", errorf(r.File, c.Pos, KindSyntax, "correlation %q refers to itself", r.Title)
	}
	cc.active[r] = true
	defer delete(cc.active, r)

	// Columns of the union: group-by fields, the condition field, then
	// the fields a referring correlation needs.
	var names []string
	index := map[string]int{}
	add := func(n string) int {
		if i, ok := index[n]; ok {
			return i
		}
		names = append(names, n)
		index[n] = len(names)
		return len(names)
	}
	var groupCols []string
	for _, g := range c.GroupBy {
		groupCols = append(groupCols, fmt.Sprintf("f_%d", add(g)))
	}
	valueCol := ""
	if c.Field != "" {
		valueCol = fmt.Sprintf("f_%d", add(c.Field))
	}
	var neededCols []string
	for _, n := range needed {
		neededCols = append(neededCols, fmt.Sprintf("f_%d", add(n)))
	}

	var parts, tags []string
	for i, ref := range c.Rules {
		at := c.Pos
		if i < len(c.RulesPos) {
			at = c.RulesPos[i]
		}
		target, ok := cc.opts.Collection.Lookup(ref)
		if !ok {
			return "", errorf(r.File, at, KindSyntax, "correlation refers to unknown rule %q", ref)
		}
		fields := make([]string, len(names))
		for j, n := range names {
			fields[j] = n
			if a, ok := c.Aliases[n]; ok {
				f, ok := a[target.Name]
				if !ok {
					f, ok = a[target.ID]
				}
				if !ok {
					return "", errorf(r.File, at, KindSyntax, "alias %q gives no field for rule %q", n, ref)
				}
				fields[j] = f
			}
		}
		rel, err := cc.relation(target, ref, fields, at, r)
		if err != nil {
			return "", err
		}
		parts = append(parts, rel)
		tags = append(tags, ref)
	}
	union := "(" + strings.Join(parts, " UNION ALL ") + ") AS events"

	secs := strconv.FormatInt(int64(c.Timespan.Seconds()), 10)
	conds := c.Condition
	if c.Type == Temporal && len(conds) == 0 {
		conds = []Threshold{{Op: "gte", Value: float64(distinct(tags))}}
	}
	if c.Type == TemporalOrdered && len(conds) > 0 {
		return "", errorf(r.File, c.Pos, KindUnsupported, "temporal_ordered takes no condition: every rule must match, in order")
	}
	if cc.d.Name() == store.ClickHouse {
		if c.Type == TemporalOrdered {
			conds = []Threshold{{Op: "gte", Value: float64(len(tags))}}
		}
		return cc.finish(cc.arrays(c, union, groupCols, valueCol, len(names), tags, secs), conds, neededCols, withValue), nil
	}
	partition := ""
	if len(groupCols) > 0 {
		partition = "PARTITION BY " + strings.Join(groupCols, ", ") + " "
	}
	window := "(" + partition + "ORDER BY event_time RANGE BETWEEN INTERVAL " + secs + " SECONDS PRECEDING AND CURRENT ROW)"

	var inner, value string
	switch c.Type {
	case EventCount:
		value = "count(*) OVER " + window
	case ValueCount:
		// An empty value counts as missing, as in ClickHouse, whose
		// non-nullable columns store a missing value as the empty string.
		value = "count(DISTINCT NULLIF(" + valueCol + ", '')) OVER " + window
	case Temporal:
		value = "count(DISTINCT sigma_rule) OVER " + window
	case ValueSum:
		value = "sum(" + cc.d.Number(valueCol) + ") OVER " + window
	case ValueAvg:
		value = "avg(" + cc.d.Number(valueCol) + ") OVER " + window
	case ValuePercentile:
		byValue := "(PARTITION BY " + strings.Join(append(append([]string(nil), groupCols...), valueCol), ", ") +
			" ORDER BY event_time RANGE BETWEEN INTERVAL " + secs + " SECONDS PRECEDING AND CURRENT ROW)"
		value = "100.0 * count(*) OVER " + byValue + " / count(*) OVER " + window
	case TemporalOrdered:
		inner = cc.ordered(union, groupCols, tags, secs)
	}
	if inner == "" {
		inner = "SELECT *, " + value + " AS value FROM " + union
	}
	return cc.finish(inner, conds, neededCols, withValue), nil
}

// finish selects the hits from the windowed events: those meeting the
// condition, with the columns a referring correlation needs.
func (cc *corrCompiler) finish(inner string, conds []Threshold, neededCols []string, withValue bool) string {
	where := make([]string, 0, len(conds))
	for _, t := range conds {
		op := map[string]string{"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "neq": "<>"}[t.Op]
		where = append(where, "value "+op+" "+strconv.FormatFloat(t.Value, 'g', -1, 64))
	}
	cols := "event_time, event_id, host_id, hostname"
	for i, col := range neededCols {
		cols += fmt.Sprintf(", %s AS f_%d", col, i+1)
	}
	if withValue {
		cols += ", value"
	}
	out := "SELECT " + cols + " FROM (" + inner + ") AS windowed"
	if len(where) > 0 {
		out += " WHERE " + strings.Join(where, " AND ")
	}
	return out
}

// arrays is the ClickHouse form of the sliding window: ClickHouse 18.16
// has no window functions, so each group's events are collected into an
// array and every event's value is computed over the events of the array
// within the timespan before it (quadratic in the size of a group).
// Tuple elements: 1 event_time, 2 event_id, 3 host_id, 4 hostname,
// 5 sigma_rule, 6... the fields f_1... .
func (cc *corrCompiler) arrays(c *Correlation, union string, groupCols []string, valueCol string, nfields int, tags []string, secs string) string {
	elems := []string{"event_time", "event_id", "host_id", "hostname", "sigma_rule"}
	for i := 1; i <= nfields; i++ {
		elems = append(elems, fmt.Sprintf("f_%d", i))
	}
	field := func(v, col string) string { // tuple element of column col
		n, _ := strconv.Atoi(strings.TrimPrefix(col, "f_"))
		return fmt.Sprintf("%s.%d", v, 5+n)
	}
	within := func(x, y string) string { // y is in the window ending at x
		return y + ".1 >= " + x + ".1 - " + secs + " AND " + y + ".1 <= " + x + ".1"
	}
	inWindow := "arrayFilter(y -> " + within("x", "y") + ", evs)"
	var value string
	switch c.Type {
	case EventCount:
		value = "arrayCount(y -> " + within("x", "y") + ", evs)"
	case ValueCount:
		value = "arrayUniq(arrayMap(y -> " + field("y", valueCol) + ", arrayFilter(y -> " + within("x", "y") + " AND " + field("y", valueCol) + " != '', evs)))"
	case Temporal:
		value = "arrayUniq(arrayMap(y -> y.5, " + inWindow + "))"
	case ValueSum:
		value = "arraySum(arrayMap(y -> toFloat64OrZero(" + field("y", valueCol) + "), " + inWindow + "))"
	case ValueAvg:
		value = "arraySum(arrayMap(y -> toFloat64OrZero(" + field("y", valueCol) + "), " + inWindow + ")) / " +
			"arrayCount(y -> " + within("x", "y") + " AND isNotNull(toFloat64OrNull(" + field("y", valueCol) + ")), evs)"
	case ValuePercentile:
		value = "100.0 * arrayCount(y -> " + within("x", "y") + " AND " + field("y", valueCol) + " = " + field("x", valueCol) + ", evs) / " +
			"arrayCount(y -> " + within("x", "y") + ", evs)"
	case TemporalOrdered:
		value = cc.orderedArrays(tags, secs)
	}
	tuple := make([]string, 0, len(elems)+1)
	for i := range elems {
		tuple = append(tuple, fmt.Sprintf("x.%d", i+1))
	}
	tuple = append(tuple, value)
	cols := make([]string, 0, len(elems)+1)
	for i, e := range elems {
		cols = append(cols, fmt.Sprintf("ev.%d AS %s", i+1, e))
	}
	cols = append(cols, fmt.Sprintf("ev.%d AS value", len(elems)+1))
	group := ""
	if len(groupCols) > 0 {
		group = " GROUP BY " + strings.Join(groupCols, ", ")
	}
	return "SELECT " + strings.Join(cols, ", ") +
		" FROM (SELECT groupArray((" + strings.Join(elems, ", ") + ")) AS evs FROM " + union + group + ") AS grouped" +
		" ARRAY JOIN arrayMap(x -> (" + strings.Join(tuple, ", ") + "), evs) AS ev"
}

// orderedArrays is 1 for an event of the last rule that ends a chain of
// events of the rules in order within the timespan, else 0; nested
// arrayExists look for each earlier link before the next.
func (cc *corrCompiler) orderedArrays(tags []string, secs string) string {
	n := len(tags)
	before := func(a, b string) string { // a is ordered before b
		return "(" + a + ".1 < " + b + ".1 OR (" + a + ".1 = " + b + ".1 AND " + a + ".2 < " + b + ".2))"
	}
	// Build from the first rule outwards: link k is variable yk.
	expr := ""
	for k := 1; k < n; k++ {
		v := fmt.Sprintf("y%d", k)
		next := "x"
		if k+1 < n {
			next = fmt.Sprintf("y%d", k+1)
		}
		cond := v + ".5 = " + cc.d.String(tags[k-1]) + " AND " + v + ".1 >= x.1 - " + secs + " AND " + before(v, next)
		if expr != "" {
			cond += " AND " + expr
		}
		expr = "arrayExists(" + v + " -> " + cond + ", evs)"
	}
	return "if(x.5 = " + cc.d.String(tags[n-1]) + " AND " + expr + ", " + strconv.Itoa(n) + ", 0)"
}

// ordered finds, for each event of the last rule, the latest start of a
// chain of events of the rules in order (c_k is the start of the best
// chain ending at an event of rule k); the chain must fit the timespan.
// Each link comes from an event strictly before the next one by
// (event_time, event_id): the GROUPS frame leaves out the rows of the
// same event, which is in the union once per rule it matches, so one
// event matching two rules is not a chain (as orderedArrays decides).
func (cc *corrCompiler) ordered(union string, groupCols, tags []string, secs string) string {
	partition := ""
	if len(groupCols) > 0 {
		partition = "PARTITION BY " + strings.Join(groupCols, ", ") + " "
	}
	q := "SELECT *, CASE WHEN sigma_rule = " + cc.d.String(tags[0]) + " THEN event_time END AS c_1 FROM " + union
	for k := 2; k <= len(tags); k++ {
		q = fmt.Sprintf("SELECT *, CASE WHEN sigma_rule = %s THEN max(c_%d) OVER (%sORDER BY event_time, event_id GROUPS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) END AS c_%d FROM (%s) AS step%d",
			cc.d.String(tags[k-1]), k-1, partition, k, q, k)
	}
	n := len(tags)
	return fmt.Sprintf("SELECT *, %d AS value FROM (%s) AS chains WHERE c_%d IS NOT NULL AND c_%d >= event_time - INTERVAL %s SECONDS",
		n, q, n, n, secs)
}

func distinct(xs []string) int {
	seen := map[string]bool{}
	for _, x := range xs {
		seen[x] = true
	}
	return len(seen)
}

func sortStrings(xs []string) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}
