package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/vigilhq/vigil"
)

// Per-query views of the raw results table. Every scheduled query's rows
// live in one table (schema.ResultsTable) with the row's columns as JSON
// text; for each query name a store has seen, it keeps a view
// results_<query> with the common columns plus one text column per result
// column, so that people can write
//
//	SELECT pid, name FROM results_processes WHERE host_id = '...'
//
// ResultViews decides which views exist and with which columns; the stores
// render and run the DDL in their dialect. Query names and column names
// come from agents: view names are made of [a-z0-9_] only, column names
// that are not plain identifiers are left out of views (they stay in the
// JSON), and the number of views is capped.

// Limits of result views.
const (
	// DefaultMaxResultViews caps the views a store creates: query names
	// come from agents.
	DefaultMaxResultViews = 1000
	// MaxResultViewColumns caps the columns of one view.
	MaxResultViewColumns = 500
	// maxViewNameLen keeps view names well within every engine's limit.
	maxViewNameLen = 63
	// maxColumnNameLen is the longest result column name a view takes.
	maxColumnNameLen = 64
)

// ResultViewPrefix starts the name of every result view.
const ResultViewPrefix = "results_"

// ResultViewFixedColumns are the columns of schema.ResultsTable every result
// view selects, in this order, before the query's own columns.
var ResultViewFixedColumns = []string{ColEventID, ColHostID, ColHostname, ColEventTime, ColIngestedAt, ColSeq, "query_name", "action", "epoch", "counter"}

// ResultViewName returns the view of a query name: "results_" and the
// name lowercased with every byte outside [a-z0-9_] replaced by "_". When
// that changes the name, or it is long, empty, or already ends like a
// suffix, an underscore and 16 hex digits of the name's SHA-256 follow, so
// that two different query names do not share a view, whatever order they
// arrive in.
func ResultViewName(query string) string {
	var b strings.Builder
	b.WriteString(ResultViewPrefix)
	exact := query != ""
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			b.WriteByte(c)
		default:
			if c >= 'A' && c <= 'Z' {
				b.WriteByte(c + 'a' - 'A')
			} else {
				b.WriteByte('_')
			}
			exact = false
		}
	}
	name := b.String()
	if exact && len(name) <= maxViewNameLen-viewSuffixLen && !hasViewSuffix(name) {
		return name
	}
	sum := sha256.Sum256([]byte(query))
	if len(name) > maxViewNameLen-viewSuffixLen {
		name = name[:maxViewNameLen-viewSuffixLen]
	}
	return name + "_" + hex.EncodeToString(sum[:8])
}

// viewSuffixLen is the length of the "_" + 16 hex digits suffix.
const viewSuffixLen = 17

// hasViewSuffix reports whether name ends like a hash suffix, which only
// ResultViewName may add.
func hasViewSuffix(name string) bool {
	if len(name) < viewSuffixLen || name[len(name)-viewSuffixLen] != '_' {
		return false
	}
	for _, c := range name[len(name)-viewSuffixLen+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// maxViewQueryLen is the longest query name that gets a view.
const maxViewQueryLen = 1024

// ValidResultColumn reports whether a result column name may become a view
// column: an ASCII letter or underscore, then letters, digits or
// underscores, at most 64 bytes. Such a name needs no escaping in any
// dialect; others are left out of views.
func ValidResultColumn(name string) bool {
	if name == "" || len(name) > maxColumnNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ResultView is one view to create or replace.
type ResultView struct {
	Name  string // results_...; only [a-z0-9_]
	Query string // the query name, untrusted: render it only as a literal through the dialect's escaper
	// Columns are the view's columns after ResultViewFixedColumns, in
	// order: each is an identifier (ValidResultColumn) and selects the
	// result column Key.
	Columns []ResultViewColumn
}

// ResultViewColumn is one query column of a view.
type ResultViewColumn struct {
	Name string // the view column: Key, or "col_"+Key when Key is a fixed column's name
	Key  string // the key in the JSON columns
}

// ViewColumns returns the view's columns for a set of result column names:
// valid names only, sorted, a name equal to a fixed column (ignoring case)
// renamed col_<name>, later names that equal an earlier one ignoring case
// dropped (engines fold case differently), at most MaxResultViewColumns.
func ViewColumns(keys []string) []ResultViewColumn {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	taken := map[string]bool{}
	for _, c := range ResultViewFixedColumns {
		taken[c] = true
	}
	var out []ResultViewColumn
	for _, k := range keys {
		if !ValidResultColumn(k) || len(out) >= MaxResultViewColumns {
			continue
		}
		name := k
		if taken[strings.ToLower(name)] && slices.Contains(ResultViewFixedColumns, strings.ToLower(name)) {
			name = "col_" + k
		}
		if taken[strings.ToLower(name)] {
			continue
		}
		taken[strings.ToLower(name)] = true
		out = append(out, ResultViewColumn{Name: name, Key: k})
	}
	return out
}

// ResultViews tracks the result views of one store: which query has which
// view with which columns. Stores call Observe with each batch's results,
// run the DDL of what it returns and then call Created. It is safe for
// concurrent use.
type ResultViews struct {
	mu      sync.Mutex
	max     int
	log     *slog.Logger
	byQuery map[string]*viewState
	byName  map[string]string // view name -> query name
	refused int64             // result rows of queries refused a view (cap)
	logged  map[string]bool   // refused queries already logged (bounded)
	skipped map[string]bool   // invalid column names already logged (bounded)
}

type viewState struct {
	name    string
	keys    map[string]bool    // every result column name seen, valid or not
	cols    []ResultViewColumn // the columns of the view as it exists
	created bool               // the view exists with cols, and cols covers keys
}

// NewResultViews returns a tracker allowing max views (0 means
// DefaultMaxResultViews). log may be nil.
func NewResultViews(max int, log *slog.Logger) *ResultViews {
	if max <= 0 {
		max = DefaultMaxResultViews
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ResultViews{max: max, log: log, byQuery: map[string]*viewState{}, byName: map[string]string{},
		logged: map[string]bool{}, skipped: map[string]bool{}}
}

// Load records a view that exists already (read back from the store's
// catalogue at open) with the result column names it was made from.
func (v *ResultViews) Load(name, query string, keys []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := &viewState{name: name, keys: map[string]bool{}, cols: ViewColumns(keys), created: true}
	for _, k := range keys {
		st.keys[k] = true
	}
	v.byQuery[query] = st
	v.byName[name] = query
}

// Observe notes the query names and column names of results and returns
// the views to create or replace: a query's first rows, or rows with a
// column name that adds a column to its view. A query beyond the cap gets
// no view (counted in Refused, logged once). Until Created is called for a
// view, Observe returns it again.
func (v *ResultViews) Observe(results []vigil.ResultRow) []ResultView {
	if len(results) == 0 {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var changed []*viewState
	var queries []string
	var last *viewState
	lastQuery := ""
	for i := range results {
		r := &results[i]
		st := last
		if i == 0 || r.Query != lastQuery {
			st = v.state(r.Query) // counts a refused row
			last, lastQuery = st, r.Query
		} else if st == nil {
			v.refused++
		}
		if st == nil {
			continue
		}
		grew := false
		for k := range r.Columns {
			if !st.keys[k] {
				st.keys[k] = true
				grew = true
				if !ValidResultColumn(k) && len(v.skipped) < 1000 && !v.skipped[k] {
					v.skipped[k] = true
					v.log.Warn("result column left out of views: not a plain identifier", "query", r.Query, "column", k)
				}
			}
		}
		if (grew || !st.created) && !slices.Contains(changed, st) {
			changed = append(changed, st)
			queries = append(queries, r.Query)
		}
	}
	var out []ResultView
	for i, st := range changed {
		cols := ViewColumns(mapKeys(st.keys))
		if st.created && slices.Equal(cols, st.cols) {
			continue // only names that cannot be columns were new
		}
		st.created = false
		out = append(out, ResultView{Name: st.name, Query: queries[i], Columns: cols})
	}
	return out
}

// Seed is Observe for a store's existing rows: one query and every
// column name its rows have.
func (v *ResultViews) Seed(query string, keys []string) []ResultView {
	cols := make(map[string]string, len(keys))
	for _, k := range keys {
		cols[k] = ""
	}
	return v.Observe([]vigil.ResultRow{{Query: query, Columns: cols}})
}

// state returns the view state of a query, creating it within the cap;
// nil when the cap refuses it. Called with mu held.
func (v *ResultViews) state(query string) *viewState {
	if st, ok := v.byQuery[query]; ok {
		return st
	}
	if len(query) > maxViewQueryLen || !utf8.ValidString(query) || strings.IndexByte(query, 0) >= 0 {
		v.refuse(query, "result view refused: query name too long, not UTF-8 or with NUL (its rows are in the results table)")
		return nil
	}
	name := ResultViewName(query)
	if other, taken := v.byName[name]; taken && other != query {
		v.refuse(query, "result view refused: another query has its view name (its rows are in the results table)")
		return nil
	}
	if len(v.byQuery) >= v.max {
		v.refuse(query, "result view cap reached: query gets no view (its rows are in the results table)")
		return nil
	}
	st := &viewState{name: name, keys: map[string]bool{}}
	v.byQuery[query] = st
	v.byName[name] = query
	return st
}

// refuse counts and logs (once per query, for the first 1,000) a query
// that gets no view. Called with mu held.
func (v *ResultViews) refuse(query, why string) {
	v.refused++
	if !v.logged[query] && len(v.logged) < 1000 {
		v.logged[query] = true
		v.log.Warn(why, "query", query, "max_views", v.max)
	}
}

// Created records that view rv now exists with its columns.
func (v *ResultViews) Created(rv ResultView) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, ok := v.byQuery[rv.Query]
	if !ok || st.name != rv.Name {
		return
	}
	st.cols = rv.Columns
	// Columns seen since Observe made rv are not in it: the view is
	// current only if rv covers every key.
	st.created = slices.Equal(ViewColumns(mapKeys(st.keys)), rv.Columns)
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ResultViewStats are counters of a ResultViews.
type ResultViewStats struct {
	Views   int   // views known
	Refused int64 // result rows whose query got no view because of the cap
}

// Stats returns the counters.
func (v *ResultViews) Stats() ResultViewStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return ResultViewStats{Views: len(v.byQuery), Refused: v.refused}
}

// ValidViewName reports whether name is a result view's name as
// ResultViewName makes them: the prefix, then only [a-z0-9_]. Stores
// check it again before pasting a name into DDL.
func ValidViewName(name string) bool {
	if !strings.HasPrefix(name, ResultViewPrefix) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// KeysJSON is the view's result column keys as a JSON array, as the
// stores record them in their catalog of views.
func (rv ResultView) KeysJSON() (string, error) {
	keys := make([]string, len(rv.Columns))
	for i, c := range rv.Columns {
		keys[i] = c.Key
	}
	b, err := json.Marshal(keys)
	return string(b), err
}

// CreateEach creates views with create and records each one created.
// Failures are logged and counted: the view comes back from Observe with
// the next rows of its query.
func (v *ResultViews) CreateEach(ctx context.Context, views []ResultView, log *slog.Logger, create func(context.Context, ResultView) error) (failed int) {
	for _, rv := range views {
		if err := create(ctx, rv); err != nil {
			log.Error("creating a result view", "view", rv.Name, "query", rv.Query, "err", err)
			failed++
			continue
		}
		v.Created(rv)
		log.Debug("result view", "view", rv.Name, "query", rv.Query, "columns", len(rv.Columns))
	}
	return failed
}
