package sigma

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vigilhq/vigil/store"
)

// ReadFiles parses rule files. Each path is a file or a directory searched
// recursively for *.yml and *.yaml. It returns every rule that parsed,
// the number of files read, and one error per bad document or file.
func ReadFiles(paths []string) (rules []*Rule, files int, errs []error) {
	read := func(p string) {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", p, err))
			return
		}
		files++
		rs, es := Parse(p, data)
		rules = append(rules, rs...)
		errs = append(errs, es...)
	}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading rules: %w", err))
			continue
		}
		if !info.IsDir() {
			read(root)
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, fmt.Errorf("reading rules: %w", err))
				return nil
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml")) {
				read(p)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("reading rules under %s: %w", root, err))
		}
	}
	return rules, files, errs
}

// Converted is one rule compiled for one dialect.
type Converted struct {
	Rule    *Rule
	Dialect store.Dialect
	Table   string // detection rules: the event table
	SQL     string // the complete SELECT a store runs
}

// Convert compiles every detection and correlation rule of the given files
// and directories (filters are applied to the rules they name). It backs
// `vigil sigma convert`.
func Convert(paths []string, opts Options) ([]Converted, []error) {
	rules, _, errs := ReadFiles(paths)
	out, cerrs := ConvertRules(rules, opts)
	return out, append(errs, cerrs...)
}

// ConvertRules compiles parsed rules; see Convert.
func ConvertRules(rules []*Rule, opts Options) ([]Converted, []error) {
	coll, errs := NewCollection(rules)
	if opts.Collection == nil {
		opts.Collection = coll
	}
	d := opts.Dialect
	if d == nil {
		d = DuckDB{}
	}
	var out []Converted
	for _, r := range coll.Rules() {
		switch r.Kind {
		case KindRule:
			q, err := Compile(r, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, Converted{Rule: r, Dialect: d.Name(), Table: q.Table, SQL: SelectSQL(d, q)})
		case KindCorrelation:
			q, err := CompileCorrelation(r, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, Converted{Rule: r, Dialect: d.Name(), SQL: q.SQL})
		}
	}
	return out, errs
}

// Report is the outcome of Check, for `vigil sigma check`.
type Report struct {
	Files     int
	Rules     int // documents parsed (rules, correlations and filters)
	Filters   int
	Converted map[store.Dialect]int // rules and correlations compiled, per dialect
	Problems  []Problem
}

// Problem is one rule that failed to parse (Dialect "") or to compile for
// a dialect.
type Problem struct {
	Dialect store.Dialect
	Err     error // a *Error when the problem has a place in a file
}

// OK reports whether every rule parsed and compiled for every dialect.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Format writes the problems, one per line, then a summary line.
func (r Report) Format(w io.Writer) error {
	for _, p := range r.Problems {
		prefix := ""
		if p.Dialect != "" {
			prefix = "[" + string(p.Dialect) + "] "
		}
		if _, err := fmt.Fprintf(w, "%s%v\n", prefix, p.Err); err != nil {
			return err
		}
	}
	dialects := make([]string, 0, len(r.Converted))
	for d, n := range r.Converted {
		dialects = append(dialects, fmt.Sprintf("%s %d", d, n))
	}
	sort.Strings(dialects)
	_, err := fmt.Fprintf(w, "%d files, %d rules (%d filters); converted: %s; %d problems\n",
		r.Files, r.Rules, r.Filters, strings.Join(dialects, ", "), len(r.Problems))
	return err
}

// Check parses the given files and directories and compiles every rule
// for every dialect (DuckDB and ClickHouse unless dialects are given).
func Check(paths []string, opts Options, dialects ...Dialect) Report {
	rules, files, errs := ReadFiles(paths)
	rep := Report{Files: files, Rules: len(rules), Converted: map[store.Dialect]int{}}
	for _, err := range errs {
		rep.Problems = append(rep.Problems, Problem{Err: err})
	}
	coll, errs := NewCollection(rules)
	for _, err := range errs {
		rep.Problems = append(rep.Problems, Problem{Err: err})
	}
	if opts.Collection == nil {
		opts.Collection = coll
	}
	for _, r := range coll.Rules() {
		if r.Kind == KindFilter {
			rep.Filters++
		}
	}
	if len(dialects) == 0 {
		dialects = []Dialect{DuckDB{}, ClickHouse{}}
	}
	for _, d := range dialects {
		o := opts
		o.Dialect = d
		out, errs := ConvertRules(coll.Rules(), o)
		rep.Converted[d.Name()] = len(out)
		for _, err := range errs {
			rep.Problems = append(rep.Problems, Problem{Dialect: d.Name(), Err: err})
		}
	}
	return rep
}
