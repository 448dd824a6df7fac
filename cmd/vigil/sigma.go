package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // sigma test runs rules in a real, in-memory DuckDB
	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/store"
)

const sigmaUsage = `Usage:
  vigil sigma convert [--target duckdb|clickhouse] [--json] [--catalog] [--placeholders FILE] FILE|DIR...
                      print each rule's SQL
  vigil sigma check   [--json] [--catalog] [--placeholders FILE] FILE|DIR...
                      parse and compile every rule for every store; list the failures
  vigil sigma test    RULE.yml... --events FILE.jsonl [--json] [--catalog] [--placeholders FILE]
                      run rules over sample events (one JSON object per line) in DuckDB
                      and print the events that match and the correlations' alerts

By default rules compile against Vigil's own event tables (process_creation,
network_connection, file_event, authentication: what the agent collects on
Linux hosts), so a rule for another logsource fails with "no event table for
logsource ...". --catalog compiles against the wide Sigma catalog instead: one
table per logsource of the SigmaHQ corpus (Windows event logs, Sysmon, cloud
audit logs, web servers, ...) with a column per field its rules use, for a
store that holds those tables and events normalised into them.
`

// runSigma is `vigil sigma convert|check|test`. It needs no server: rules
// are compiled here and tested in an in-memory DuckDB.
func runSigma(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sigmaUsage)
		return errors.New("sigma: no subcommand given")
	}
	switch args[0] {
	case "convert":
		return runSigmaConvert(args[1:], stdout, stderr)
	case "check":
		return runSigmaCheck(args[1:], stdout, stderr)
	case "test":
		return runSigmaTest(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, sigmaUsage)
		return nil
	}
	fmt.Fprint(stderr, sigmaUsage)
	return fmt.Errorf("sigma: unknown subcommand %q", args[0])
}

// sigmaFlags are the flags every sigma subcommand shares.
type sigmaFlags struct {
	fs           *flag.FlagSet
	asJSON       *bool
	catalog      *bool
	placeholders *string
}

func newSigmaFlags(name string, stderr io.Writer) sigmaFlags {
	fs := flag.NewFlagSet("sigma "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return sigmaFlags{
		fs:     fs,
		asJSON: fs.Bool("json", false, "print one JSON object per line"),
		catalog: fs.Bool("catalog", false, "compile against the wide Sigma catalog (a table per logsource of the SigmaHQ corpus: "+
			"Windows, cloud, ...) instead of Vigil's four Linux event tables"),
		placeholders: fs.String("placeholders", "", "YAML file mapping placeholder names to lists of values, for the expand modifier"),
	}
}

// options selects the mapping and reads the placeholders file, if any.
func (f sigmaFlags) options() (sigma.Options, error) {
	var o sigma.Options
	if *f.catalog {
		o.Mapping = sigma.CatalogMapping{}
	}
	if *f.placeholders == "" {
		return o, nil
	}
	p, err := readPlaceholders(*f.placeholders)
	if err != nil {
		return o, err
	}
	o.Placeholders = p
	return o, nil
}

// hint says how to compile rules whose logsource has no Vigil event
// table, when some of errs are that and --catalog was not given.
func (f sigmaFlags) hint(w io.Writer, errs []error) {
	if *f.catalog {
		return
	}
	n := 0
	for _, err := range errs {
		if sigma.NoTable(err) {
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(w, "hint: no Vigil event table for the logsource (%d of the problems); "+
			"--catalog compiles for the Sigma catalog's tables (Windows, cloud, ...)\n", n)
	}
}

// readPlaceholders reads a YAML map of placeholder name to a list of
// values (a single value may stand for a list of one).
func readPlaceholders(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading placeholders: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]string{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d:%d: placeholders must be a map of name to list of values", path, root.Line, root.Column)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch v.Kind {
		case yaml.ScalarNode:
			out[k.Value] = []string{v.Value}
		case yaml.SequenceNode:
			vals := make([]string, 0, len(v.Content))
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s:%d:%d: placeholder %q: values must be text", path, item.Line, item.Column, k.Value)
				}
				vals = append(vals, item.Value)
			}
			out[k.Value] = vals
		default:
			return nil, fmt.Errorf("%s:%d:%d: placeholder %q: want a list of values", path, v.Line, v.Column, k.Value)
		}
	}
	return out, nil
}

func runSigmaConvert(args []string, stdout, stderr io.Writer) error {
	f := newSigmaFlags("convert", stderr)
	target := f.fs.String("target", "duckdb", "SQL dialect: duckdb or clickhouse")
	paths, err := parseInterspersed(f.fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return errors.New("sigma convert: give rule files or directories")
	}
	d, err := sigma.DialectFor(store.Dialect(*target))
	if err != nil {
		return fmt.Errorf("sigma convert: --target: %w", err)
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	opts.Dialect = d
	conv, errs := sigma.Convert(paths, opts)
	enc := json.NewEncoder(stdout)
	for _, c := range conv {
		if *f.asJSON {
			if err := enc.Encode(map[string]string{
				"id": c.Rule.ID, "title": c.Rule.Title, "file": c.Rule.File,
				"target": string(c.Dialect), "table": c.Table, "sql": c.SQL,
			}); err != nil {
				return err
			}
			continue
		}
		// Titles are one line in practice; keep the comment one line anyway.
		title := strings.Join(strings.Fields(c.Rule.Title), " ")
		if _, err := fmt.Fprintf(stdout, "-- %s: %s %s\n%s;\n\n", c.Rule.File, c.Rule.ID, title, c.SQL); err != nil {
			return err
		}
	}
	for _, err := range errs {
		fmt.Fprintln(stderr, err)
	}
	f.hint(stderr, errs)
	if len(errs) > 0 {
		return fmt.Errorf("sigma convert: %d of %d rules failed", len(errs), len(errs)+len(conv))
	}
	return nil
}

func runSigmaCheck(args []string, stdout, stderr io.Writer) error {
	f := newSigmaFlags("check", stderr)
	paths, err := parseInterspersed(f.fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return errors.New("sigma check: give rule files or directories")
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	rep := sigma.Check(paths, opts)
	if *f.asJSON {
		if err := json.NewEncoder(stdout).Encode(checkJSON(rep)); err != nil {
			return err
		}
	} else if err := rep.Format(stdout); err != nil {
		return err
	}
	if !rep.OK() {
		errs := make([]error, 0, len(rep.Problems))
		for _, p := range rep.Problems {
			errs = append(errs, p.Err)
		}
		f.hint(stderr, errs)
		return fmt.Errorf("sigma check: %d problems", len(rep.Problems))
	}
	return nil
}

type problemJSON struct {
	Dialect string `json:"dialect,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

func checkJSON(rep sigma.Report) map[string]any {
	conv := map[string]int{}
	for d, n := range rep.Converted {
		conv[string(d)] = n
	}
	problems := make([]problemJSON, 0, len(rep.Problems))
	for _, p := range rep.Problems {
		pj := problemJSON{Dialect: string(p.Dialect), Message: p.Err.Error(), Error: p.Err.Error()}
		var se *sigma.Error
		if errors.As(p.Err, &se) {
			pj.File, pj.Line, pj.Column, pj.Message = se.File, se.Pos.Line, se.Pos.Col, se.Msg
		}
		problems = append(problems, pj)
	}
	return map[string]any{
		"files": rep.Files, "rules": rep.Rules, "filters": rep.Filters,
		"converted": conv, "problems": problems, "ok": rep.OK(),
	}
}

func runSigmaTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newSigmaFlags("test", stderr)
	eventsPath := f.fs.String("events", "", "sample events: one JSON object per line keyed by the rules' Sigma field names, "+
		"with optional \"id\" and \"timestamp\" (RFC 3339); a .yml/.yaml file is read in the older format with expect lists")
	paths, err := parseInterspersed(f.fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 || *eventsPath == "" {
		fmt.Fprint(stderr, sigmaUsage)
		return errors.New("sigma test: give rule files and --events FILE")
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	rules, _, errs := sigma.ReadFiles(paths)
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintln(stderr, err)
		}
		return fmt.Errorf("sigma test: %d rule files failed to parse", len(errs))
	}
	file, err := os.Open(*eventsPath)
	if err != nil {
		return fmt.Errorf("sigma test: %w", err)
	}
	defer file.Close()

	db, err := openTestDB()
	if err != nil {
		return err
	}
	defer db.Close()

	if strings.HasSuffix(*eventsPath, ".yml") || strings.HasSuffix(*eventsPath, ".yaml") {
		return runSigmaTestYAML(ctx, db, rules, file, *eventsPath, opts, *f.asJSON, stdout)
	}
	events, err := sigma.ReadEvents(file)
	if err != nil {
		return fmt.Errorf("sigma test: %s: %w", *eventsPath, err)
	}
	out, err := sigma.RunEvents(ctx, db, rules, events, opts)
	if err != nil {
		if strings.HasPrefix(err.Error(), "line ") {
			return fmt.Errorf("sigma test: %s: %w", *eventsPath, err)
		}
		if sigma.NoTable(err) && !*f.catalog {
			return fmt.Errorf("sigma test: %w (--catalog compiles rules for the Sigma catalog's logsources)", err)
		}
		return fmt.Errorf("sigma test: %w", err)
	}
	if *f.asJSON {
		return writeTestJSON(stdout, out)
	}
	return writeTestText(stdout, out, len(events))
}

func eventJSON(m map[string]any, ev sigma.Event) {
	m["line"] = ev.Line
	if ev.ID != "" {
		m["event_id"] = ev.ID
	}
	if !ev.Time.IsZero() {
		m["timestamp"] = ev.Time.Format(time.RFC3339Nano)
	}
}

func writeTestJSON(w io.Writer, out sigma.Outcome) error {
	enc := json.NewEncoder(w)
	for _, h := range out.Hits {
		m := map[string]any{"type": "match", "rule_id": h.Rule.ID, "title": h.Rule.Title, "file": h.Rule.File}
		eventJSON(m, h.Event)
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	for _, a := range out.Alerts {
		group := map[string]any{}
		for _, g := range a.Group {
			group[g.Field] = g.Value
		}
		m := map[string]any{"type": "alert", "rule_id": a.Rule.ID, "title": a.Rule.Title, "file": a.Rule.File,
			"group": group, "value": a.Value}
		eventJSON(m, a.Event)
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	return nil
}

func eventText(ev sigma.Event) string {
	if ev.ID != "" {
		return fmt.Sprintf("event %s (line %d)", ev.ID, ev.Line)
	}
	return fmt.Sprintf("event at line %d", ev.Line)
}

func writeTestText(w io.Writer, out sigma.Outcome, events int) error {
	var b strings.Builder
	for _, h := range out.Hits {
		fmt.Fprintf(&b, "match  %s  %q (%s)\n", eventText(h.Event), h.Rule.Title, h.Rule.ID)
	}
	for _, a := range out.Alerts {
		var group []string
		for _, g := range a.Group {
			v := "(none)"
			if g.Value != nil {
				v = fmt.Sprint(g.Value)
			}
			group = append(group, g.Field+"="+v)
		}
		gs := "(no group-by)"
		if len(group) > 0 {
			gs = strings.Join(group, " ")
		}
		fmt.Fprintf(&b, "alert  %q (%s)  group %s  completed by %s at %s  value %g\n",
			a.Rule.Title, a.Rule.ID, gs, eventText(a.Event), a.Event.Time.Format(time.RFC3339), a.Value)
	}
	fmt.Fprintf(&b, "%d events, %d matches, %d correlation alerts\n", events, len(out.Hits), len(out.Alerts))
	_, err := io.WriteString(w, b.String())
	return err
}

// runSigmaTestYAML runs the older YAML sample format, whose events say
// which rules must match them; it fails when any event does not.
func runSigmaTestYAML(ctx context.Context, db *testDB, rules []*sigma.Rule, r io.Reader, path string, opts sigma.Options, asJSON bool, stdout io.Writer) error {
	events, err := sigma.ReadTestEvents(r)
	if err != nil {
		return fmt.Errorf("sigma test: %s: %w", path, err)
	}
	res, err := sigma.Test(ctx, db, rules, events, opts)
	if err != nil {
		if sigma.NoTable(err) && opts.Mapping == nil {
			return fmt.Errorf("sigma test: %w (--catalog compiles rules for the Sigma catalog's logsources)", err)
		}
		return fmt.Errorf("sigma test: %w", err)
	}
	failed := 0
	enc := json.NewEncoder(stdout)
	for _, r := range res {
		if !r.Pass() {
			failed++
		}
		if asJSON {
			if err := enc.Encode(map[string]any{"event": r.Event, "pass": r.Pass(), "matched": r.Matched,
				"missing": r.Missing, "unexpected": r.Unexpected}); err != nil {
				return err
			}
			continue
		}
		status := "ok  "
		if !r.Pass() {
			status = "FAIL"
		}
		fmt.Fprintf(stdout, "%s %s: matched %q", status, r.Event, r.Matched)
		if len(r.Missing) > 0 {
			fmt.Fprintf(stdout, ", missing %q", r.Missing)
		}
		if len(r.Unexpected) > 0 {
			fmt.Fprintf(stdout, ", unexpected %q", r.Unexpected)
		}
		fmt.Fprintln(stdout)
	}
	if failed > 0 {
		return fmt.Errorf("sigma test: %d of %d events did not match as expected", failed, len(res))
	}
	return nil
}

// testDB is an in-memory DuckDB database for sigma.RunEvents.
type testDB struct{ db *sql.DB }

var _ sigma.TestDB = (*testDB)(nil)

func openTestDB() (*testDB, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("opening in-memory duckdb: %w", err)
	}
	// One connection: every statement sees the same in-memory database.
	db.SetMaxOpenConns(1)
	return &testDB{db: db}, nil
}

func (d *testDB) Close() error { return d.db.Close() }

func (d *testDB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := d.db.ExecContext(ctx, query, args...)
	return err
}

// Query returns every row: sample files are small, and a cut-off result
// would hide matches.
func (d *testDB) Query(ctx context.Context, query string, args ...any) (*store.Rows, error) {
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := &store.Rows{Columns: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out.Rows = append(out.Rows, vals)
	}
	return out, rows.Err()
}
