package sigma

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// TestEvent is a sample event in the YAML format of `vigil sigma test`
// (the primary format is JSON lines, see Event): Sigma field values
// under a logsource, and optionally the rules (ids, names or titles) that
// must match it; an empty Expect means "no rule matches".
type TestEvent struct {
	Name      string         `yaml:"name"`
	Logsource Logsource      `yaml:"-"`
	Fields    map[string]any `yaml:"fields"`
	Expect    []string       `yaml:"expect"`
}

// TestResult says which rules matched one sample event.
type TestResult struct {
	Event      string
	Matched    []string // titles of the rules that matched
	Missing    []string // expected but not matched
	Unexpected []string // matched but not expected
}

// Pass reports whether the event matched exactly the expected rules.
func (r TestResult) Pass() bool { return len(r.Missing) == 0 && len(r.Unexpected) == 0 }

// ReadTestEvents reads sample events: YAML (or JSON) documents like
//
//	name: curl to shell
//	logsource: {product: linux, category: process_creation}
//	fields: {Image: /usr/bin/bash, CommandLine: "bash -c 'curl x | sh'"}
//	expect: [Download Piped to a Shell]
func ReadTestEvents(r io.Reader) ([]TestEvent, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading test events: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []TestEvent
	for i := 1; ; i++ {
		var doc struct {
			TestEvent `yaml:",inline"`
			Logsource struct {
				Product, Category, Service string
			} `yaml:"logsource"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("test event %d: %w", i, err)
		}
		ev := doc.TestEvent
		ev.Logsource = Logsource{Product: doc.Logsource.Product, Category: doc.Logsource.Category, Service: doc.Logsource.Service}
		if ev.Name == "" {
			ev.Name = fmt.Sprintf("event %d", i)
		}
		out = append(out, ev)
	}
	return out, nil
}

// TestDB is what Test needs of a database: an empty DuckDB database (for
// example in memory) behind a small adapter, so that this package links
// no database code.
type TestDB interface {
	Exec(ctx context.Context, query string, args ...any) error
	store.Querier
}

// Test loads the sample events into tables of db (created from the
// mapping's schema) and runs every detection rule over them in DuckDB's
// dialect. It backs `vigil sigma test`.
func Test(ctx context.Context, db TestDB, rules []*Rule, events []TestEvent, opts Options) ([]TestResult, error) {
	opts.Dialect = DuckDB{}
	if opts.Mapping == nil {
		opts.Mapping = SchemaMapping{}
	}
	coll, _ := NewCollection(rules)
	if opts.Collection == nil {
		opts.Collection = coll
	}
	d := DuckDB{}
	created := map[string]schema.Table{}
	for i, ev := range events {
		t, ok := opts.Mapping.Table(ev.Logsource)
		if !ok {
			err := errorf("", Pos{}, KindUnmapped, "test event %q: no event table for logsource %s", ev.Name, ev.Logsource)
			err.noTable = true
			return nil, err
		}
		if _, ok := created[t.Name]; !ok {
			cols := make([]string, 0, len(t.AllColumns()))
			for _, c := range t.AllColumns() {
				cols = append(cols, d.Ident(c.Name)+" "+string(c.Type))
			}
			if err := db.Exec(ctx, "CREATE TABLE "+d.Ident(t.Name)+" ("+strings.Join(cols, ", ")+")"); err != nil {
				return nil, fmt.Errorf("creating table %s (Test needs an empty database): %w", t.Name, err)
			}
			created[t.Name] = t
		}
		names := []string{"seq", "event_id"}
		args := []any{int64(i + 1), ev.Name}
		fields := make([]string, 0, len(ev.Fields))
		for f := range ev.Fields {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			col, ok := opts.Mapping.Column(t, f)
			if !ok {
				return nil, fmt.Errorf("test event %q: field %q has no column in table %s", ev.Name, f, t.Name)
			}
			names = append(names, d.Ident(col.Name))
			args = append(args, ev.Fields[f])
		}
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ")
		if err := db.Exec(ctx, "INSERT INTO "+d.Ident(t.Name)+" ("+strings.Join(names, ", ")+") VALUES ("+marks+")", args...); err != nil {
			return nil, fmt.Errorf("test event %q: %w", ev.Name, err)
		}
	}
	matched := make([][]*Rule, len(events))
	for _, r := range coll.Rules() {
		if r.Kind != KindRule {
			continue
		}
		q, err := Compile(r, opts)
		if err != nil {
			return nil, err
		}
		if _, ok := created[q.Table]; !ok {
			continue
		}
		rows, err := db.Query(ctx, "SELECT seq FROM "+d.Ident(q.Table)+" WHERE "+q.Where)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Title, err)
		}
		if rows.Truncated {
			return nil, fmt.Errorf("rule %q: result truncated by the row limit", r.Title)
		}
		for _, row := range rows.Rows {
			seq, ok := row[0].(int64)
			if !ok || seq < 1 || int(seq) > len(events) {
				return nil, fmt.Errorf("rule %q: unexpected seq %v", r.Title, row[0])
			}
			matched[seq-1] = append(matched[seq-1], r)
		}
	}
	results := make([]TestResult, len(events))
	for i, ev := range events {
		res := TestResult{Event: ev.Name}
		hit := map[int]bool{}
		for _, r := range matched[i] {
			res.Matched = append(res.Matched, r.Title)
			found := false
			for j, want := range ev.Expect {
				if want == r.ID || want == r.Title || (r.Name != "" && want == r.Name) {
					hit[j], found = true, true
				}
			}
			if !found {
				res.Unexpected = append(res.Unexpected, r.Title)
			}
		}
		for j, want := range ev.Expect {
			if !hit[j] {
				res.Missing = append(res.Missing, want)
			}
		}
		results[i] = res
	}
	return results, nil
}

// Sample events in JSON lines, the primary input of `vigil sigma test`.

// Event is one sample event of `vigil sigma test`: a JSON object on one
// line of an events file, keyed by the Sigma field names of the rules
// under test (Image, CommandLine, User, ...). Two keys are not fields:
// "id" names the event in the output and "timestamp" (RFC 3339) places it
// in time for correlations.
type Event struct {
	Line   int            // 1-based line in the events file
	ID     string         // "" when the event has no id
	Time   time.Time      // zero when the event has no timestamp
	Fields map[string]any // string, json.Number, bool or nil
}

// Name is how output refers to the event: its id, else its line.
func (e Event) Name() string {
	if e.ID != "" {
		return e.ID
	}
	return "line " + strconv.Itoa(e.Line)
}

// ReadEvents reads one JSON object per line; blank lines and lines
// starting with # are skipped. An error names the line.
func ReadEvents(r io.Reader) ([]Event, error) {
	br := bufio.NewReader(r)
	var out []Event
	for line := 1; ; line++ {
		text, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading events: line %d: %w", line, err)
		}
		if t := strings.TrimSpace(text); t != "" && !strings.HasPrefix(t, "#") {
			ev, perr := parseEvent(line, t)
			if perr != nil {
				return nil, perr
			}
			out = append(out, ev)
		}
		if err != nil { // io.EOF
			return out, nil
		}
	}
}

func parseEvent(line int, text string) (Event, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return Event{}, bad("not a JSON object: %v", err)
	}
	if obj == nil {
		return Event{}, bad("not a JSON object: null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Event{}, bad("more than one JSON value on the line")
	}
	ev := Event{Line: line, Fields: map[string]any{}}
	for k, v := range obj {
		switch k {
		case "id":
			switch id := v.(type) {
			case string:
				ev.ID = id
			case json.Number:
				ev.ID = id.String()
			default:
				return Event{}, bad("id must be a string or a number, not %s", jsonKind(v))
			}
		case "timestamp":
			s, ok := v.(string)
			if !ok {
				return Event{}, bad("timestamp must be RFC 3339 text, not %s", jsonKind(v))
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return Event{}, bad("timestamp %q is not RFC 3339 (like 2026-01-02T15:04:05Z)", s)
			}
			ev.Time = t.UTC()
		default:
			switch v.(type) {
			case map[string]any, []any:
				return Event{}, bad("field %q: %s is not a supported value; give text, a number, a boolean or null", k, jsonKind(v))
			}
			ev.Fields[k] = v
		}
	}
	return ev, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "text"
	case []any:
		return "an array"
	}
	return "an object"
}

// Hit is a detection rule matching a sample event.
type Hit struct {
	Rule  *Rule
	Event Event
}

// Alert is a correlation rule holding at a sample event: the event that
// completed it, the values of its group-by fields and the value compared
// with its condition.
type Alert struct {
	Rule  *Rule
	Event Event
	Group []GroupValue // in the order of the correlation's group-by
	Value float64
}

// GroupValue is the value of one group-by field of an alert; Value is nil
// when the events had no value for the field.
type GroupValue struct {
	Field string
	Value any
}

// Outcome is what RunEvents found: hits ordered by event, then rule
// title; alerts ordered by time, then event.
type Outcome struct {
	Hits   []Hit
	Alerts []Alert
}

// RunEvents loads sample events into db (an empty DuckDB database) through
// opts.Mapping, as the server stores events, and runs the rules over them:
// every detection rule and every correlation. Each event goes into each
// table of the rules whose columns hold all its fields. It backs
// `vigil sigma test`.
func RunEvents(ctx context.Context, db TestDB, rules []*Rule, events []Event, opts Options) (Outcome, error) {
	d := DuckDB{}
	opts.Dialect = d
	if opts.Mapping == nil {
		opts.Mapping = SchemaMapping{}
	}
	if opts.Collection == nil {
		coll, errs := NewCollection(rules)
		if len(errs) > 0 {
			return Outcome{}, errs[0]
		}
		opts.Collection = coll
	}
	type detection struct {
		r *Rule
		q Query
	}
	var dets []detection
	var corrs []*Rule
	var tables []schema.Table
	for _, r := range opts.Collection.Rules() {
		switch r.Kind {
		case KindRule:
			q, err := Compile(r, opts)
			if err != nil {
				return Outcome{}, err
			}
			dets = append(dets, detection{r, q})
			if !slices.ContainsFunc(tables, func(t schema.Table) bool { return t.Name == q.Table }) {
				t, _ := opts.Mapping.Table(r.Logsource) // Compile found it
				tables = append(tables, t)
			}
		case KindCorrelation:
			corrs = append(corrs, r)
		}
	}
	if len(dets) == 0 {
		return Outcome{}, errors.New("no detection rules to test")
	}
	if len(corrs) > 0 {
		for _, ev := range events {
			if ev.Time.IsZero() {
				return Outcome{}, fmt.Errorf("line %d: correlation rules need a timestamp on every event", ev.Line)
			}
		}
	}
	if err := loadEvents(ctx, db, d, opts.Mapping, tables, events); err != nil {
		return Outcome{}, err
	}
	byKey := func(v any) (Event, error) {
		s, _ := v.(string)
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(events) {
			return Event{}, fmt.Errorf("unexpected event_id %v", v)
		}
		return events[i], nil
	}
	var out Outcome
	for _, det := range dets {
		rows, err := db.Query(ctx, "SELECT event_id FROM "+d.Ident(det.q.Table)+" WHERE "+det.q.Where+" ORDER BY seq")
		if err != nil {
			return Outcome{}, fmt.Errorf("running rule %q (%s): %w", det.r.Title, det.r.File, err)
		}
		if rows.Truncated {
			return Outcome{}, fmt.Errorf("rule %q: result truncated by the row limit", det.r.Title)
		}
		for _, row := range rows.Rows {
			ev, err := byKey(row[0])
			if err != nil {
				return Outcome{}, fmt.Errorf("rule %q: %w", det.r.Title, err)
			}
			out.Hits = append(out.Hits, Hit{Rule: det.r, Event: ev})
		}
	}
	sort.SliceStable(out.Hits, func(i, j int) bool {
		a, b := out.Hits[i], out.Hits[j]
		if a.Event.Line != b.Event.Line {
			return a.Event.Line < b.Event.Line
		}
		return a.Rule.Title < b.Rule.Title
	})
	for _, r := range corrs {
		q, err := CompileCorrelation(r, opts)
		if err != nil {
			return Outcome{}, err
		}
		rows, err := db.Query(ctx, q.SQL)
		if err != nil {
			return Outcome{}, fmt.Errorf("running correlation %q (%s): %w", r.Title, r.File, err)
		}
		if rows.Truncated {
			return Outcome{}, fmt.Errorf("correlation %q: result truncated by the row limit", r.Title)
		}
		col := map[string]int{}
		for i, c := range rows.Columns {
			col[c] = i
		}
		for _, row := range rows.Rows {
			ev, err := byKey(row[col["event_id"]])
			if err != nil {
				return Outcome{}, fmt.Errorf("correlation %q: %w", r.Title, err)
			}
			a := Alert{Rule: r, Event: ev, Value: toFloat(row[col["value"]])}
			for i, f := range q.GroupBy {
				a.Group = append(a.Group, GroupValue{Field: f, Value: row[col[fmt.Sprintf("group_%d", i+1)]]})
			}
			out.Alerts = append(out.Alerts, a)
		}
	}
	sort.SliceStable(out.Alerts, func(i, j int) bool {
		a, b := out.Alerts[i], out.Alerts[j]
		if !a.Event.Time.Equal(b.Event.Time) {
			return a.Event.Time.Before(b.Event.Time)
		}
		return a.Event.Line < b.Event.Line
	})
	return out, nil
}

// loadEvents creates the tables and inserts each event into every table
// whose columns hold all its fields. The event_id column is the event's
// index in events, zero-padded so that ties in time keep file order.
func loadEvents(ctx context.Context, db TestDB, d Dialect, m Mapping, tables []schema.Table, events []Event) error {
	for _, t := range tables {
		cols := make([]string, 0, len(t.AllColumns()))
		for _, c := range t.AllColumns() {
			cols = append(cols, d.Ident(c.Name)+" "+string(c.Type))
		}
		if err := db.Exec(ctx, "CREATE TABLE "+d.Ident(t.Name)+" ("+strings.Join(cols, ", ")+")"); err != nil {
			return fmt.Errorf("creating table %s (the test needs an empty database): %w", t.Name, err)
		}
	}
	seq := make([]int64, len(tables))
	for i, ev := range events {
		fields := make([]string, 0, len(ev.Fields))
		for f := range ev.Fields {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		var firstErr error
		loaded := false
		for ti, t := range tables {
			names := []string{"seq", "event_id", "event_time"}
			seq[ti]++
			args := []any{seq[ti], fmt.Sprintf("%09d", i), nil}
			if !ev.Time.IsZero() {
				args[2] = ev.Time
			}
			var err error
			for _, f := range fields {
				col, ok := m.Column(t, f)
				if !ok {
					err = fmt.Errorf("line %d: field %q has no column in table %s", ev.Line, f, t.Name)
					if s := suggest(f, m.Fields(t)); s != "" {
						err = fmt.Errorf("%w (did you mean %q?)", err, s)
					}
					break
				}
				v, cerr := columnValue(col, ev.Fields[f])
				if cerr != nil {
					err = fmt.Errorf("line %d: field %q (column %s, %s): %w", ev.Line, f, col.Name, col.Type, cerr)
					break
				}
				names = append(names, d.Ident(col.Name))
				args = append(args, v)
			}
			if err != nil {
				seq[ti]--
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			marks := strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ")
			if err := db.Exec(ctx, "INSERT INTO "+d.Ident(t.Name)+" ("+strings.Join(names, ", ")+") VALUES ("+marks+")", args...); err != nil {
				return fmt.Errorf("line %d: loading into %s: %w", ev.Line, t.Name, err)
			}
			loaded = true
		}
		if !loaded {
			return firstErr
		}
	}
	return nil
}

// columnValue converts a JSON value to the type of its column.
func columnValue(c schema.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	default:
		return nil, fmt.Errorf("unsupported value %v", v)
	}
	switch c.Type {
	case schema.Text:
		return s, nil
	case schema.BigInt:
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			if _, isBool := v.(bool); !isBool {
				return n, nil
			}
		}
		return nil, fmt.Errorf("%q is not an integer", s)
	case schema.Double:
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			if _, isBool := v.(bool); !isBool {
				return f, nil
			}
		}
		return nil, fmt.Errorf("%q is not a number", s)
	case schema.Bool:
		if b, err := strconv.ParseBool(s); err == nil {
			return b, nil
		}
		return nil, fmt.Errorf("%q is not a boolean", s)
	case schema.Timestamp:
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC(), nil
		}
		return nil, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return nil, fmt.Errorf("column type %s is not supported", c.Type)
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case float64:
		return x
	case float32:
		return float64(x)
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	// Hugeint and decimals arrive as other types; their text is a number.
	f, _ := strconv.ParseFloat(fmt.Sprint(v), 64)
	return f
}
