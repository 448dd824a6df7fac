package sigma

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// TestEvent is a sample event for `vigil sigma test`: Sigma field values
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
			return nil, fmt.Errorf("test event %q: no event table for logsource %s", ev.Name, ev.Logsource)
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
