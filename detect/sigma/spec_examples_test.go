package sigma_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// The examples of the Sigma specification (tests/schema: rules, filters,
// correlations) must parse, validate and convert to both dialects, and
// their DuckDB SQL must run and give the right hits (spec_semantics_test.go).
// The examples name base rules the specification does not ship; the
// documents in testdata/spec-fixtures stand in for them. Examples and
// fixtures are grouped by taxonomy: the ECS examples reuse the ids of the
// others, so each taxonomy is a collection of its own.

const specFixtures = "testdata/spec-fixtures"

// specMapping is the wide Sigma catalog (sigma.CatalogMapping) plus the
// fields the specification's examples use that no SigmaHQ rule does, so
// the generated catalog has no column for them: the v2.1 network
// category (category network, service dns) and a few correlation fields.
// TestSpecMappingExtrasAreMissing keeps this list to what is missing.
type specMapping struct{ sigma.CatalogMapping }

var _ sigma.Mapping = specMapping{}

// specExtraField is one field the examples need that the catalog lacks.
type specExtraField struct {
	field, column string
	typ           schema.Type
}

var specExtras = map[string][]specExtraField{
	"windows_security": {{"User", "user", schema.Text}},
	"firewall":         {{"SourceIP", "source_ip", schema.Text}, {"User", "user", schema.Text}, {"BytesOut", "bytes_out", schema.BigInt}},
	"proxy":            {{"SourceIP", "source_ip", schema.Text}, {"User", "user", schema.Text}, {"bytes_sent", "bytes_sent", schema.BigInt}},
	// The network category of the taxonomy appendix (v2.1), service dns.
	"network_dns": {{"dns.question.name", "dns_question_name", schema.Text}, {"dns.response.code", "dns_response_code", schema.Text}},
}

func (m specMapping) Table(ls sigma.Logsource) (schema.Table, bool) {
	t, ok := m.CatalogMapping.Table(ls)
	if !ok && ls.Category == "network" && ls.Service == "dns" && ls.Product == "" {
		t = schema.Table{Name: "network_dns", Description: "Sigma v2.1 network category, service dns",
			Columns: []schema.Column{{Name: "message", Type: schema.Text, Description: "raw event text"}}}
		ok = true
	}
	if !ok {
		return t, false
	}
	extras := specExtras[t.Name]
	if len(extras) == 0 {
		return t, true
	}
	// Copy: the catalog's tables are shared.
	ext := t
	ext.Columns = slices.Clone(t.Columns)
	ext.Fields = make(map[string]string, len(t.Fields)+len(extras))
	for f, c := range t.Fields {
		ext.Fields[f] = c
	}
	for _, x := range extras {
		ext.Columns = append(ext.Columns, schema.Column{Name: x.column, Type: x.typ, Description: "spec example field " + x.field})
		ext.Fields[x.field] = x.column
	}
	return ext, true
}

func TestSpecMappingExtrasAreMissing(t *testing.T) {
	byName := map[string]schema.Table{}
	for _, tbl := range schema.SigmaTables() {
		byName[tbl.Name] = tbl
	}
	for name, extras := range specExtras {
		tbl, ok := byName[name]
		if !ok {
			if name != "network_dns" {
				t.Errorf("table %s is not in the catalog", name)
			}
			continue
		}
		for _, x := range extras {
			if c, ok := (sigma.CatalogMapping{}).Column(tbl, x.field); ok {
				t.Errorf("the catalog maps %s.%s to %s now: drop it from specExtras", name, x.field, c.Name)
			}
			if tbl.HasColumn(x.column) {
				t.Errorf("column %s.%s exists in the catalog: pick another name for the extra field %s", name, x.column, x.field)
			}
		}
	}
	if _, ok := (sigma.CatalogMapping{}).Table(sigma.Logsource{Category: "network", Service: "dns"}); ok {
		t.Error("the catalog has the network/dns logsource now: drop network_dns from specMapping")
	}
}

// specSet is the examples and fixtures of one taxonomy.
type specSet struct {
	taxonomy string
	examples []*sigma.Rule
	fixtures []*sigma.Rule
	files    int // example files
}

func (s *specSet) all() []*sigma.Rule { return append(slices.Clone(s.examples), s.fixtures...) }

func taxonomyOf(r *sigma.Rule) string {
	if r.Taxonomy == "" {
		return "sigma"
	}
	return strings.ToLower(r.Taxonomy)
}

// loadSpecSets reads every file under the specification's tests/schema
// (no list of names: a file added there is checked too) and the fixtures.
func loadSpecSets(t *testing.T) map[string]*specSet {
	t.Helper()
	root := sharedDir(t, filepath.Join("reference", "sigma-specification", "tests", "schema"))
	sets := map[string]*specSet{}
	set := func(tx string) *specSet {
		if sets[tx] == nil {
			sets[tx] = &specSet{taxonomy: tx}
		}
		return sets[tx]
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext != ".yml" && ext != ".yaml" {
			t.Errorf("%s: not a YAML file; the test reads every file of %s", p, root)
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rules, errs := sigma.Parse(p, data)
		for _, e := range errs {
			t.Errorf("spec example does not parse: %v", e)
		}
		if len(rules) == 0 && len(errs) == 0 {
			t.Errorf("%s: no Sigma document", p)
		}
		for _, r := range rules {
			s := set(taxonomyOf(r))
			s.examples = append(s.examples, r)
		}
		if len(rules) > 0 {
			set(taxonomyOf(rules[0])).files++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", root, err)
	}
	fixtures, _, errs := sigma.ReadFiles([]string{specFixtures})
	for _, e := range errs {
		t.Errorf("fixture: %v", e)
	}
	for _, r := range fixtures {
		s := set(taxonomyOf(r))
		s.fixtures = append(s.fixtures, r)
	}
	for tx, s := range sets {
		if len(s.examples) == 0 {
			t.Errorf("fixtures of taxonomy %q serve no example", tx)
		}
	}
	return sets
}

func sortedSets(sets map[string]*specSet) []*specSet {
	out := make([]*specSet, 0, len(sets))
	for _, s := range sets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].taxonomy < out[j].taxonomy })
	return out
}

// TestSpecExamples parses, validates and converts every example of the
// specification to DuckDB and ClickHouse SQL, and runs the DuckDB SQL on
// empty tables of the mapping.
func TestSpecExamples(t *testing.T) {
	sets := loadSpecSets(t)
	files, docs := 0, 0
	kinds := map[sigma.DocKind]int{}
	corrTypes := map[string]bool{}
	for _, s := range sortedSets(sets) {
		files += s.files
		docs += len(s.examples)
		for _, r := range s.examples {
			kinds[r.Kind]++
			if r.Kind == sigma.KindCorrelation {
				corrTypes[r.Correlation.Type] = true
			}
		}
		t.Run(s.taxonomy, func(t *testing.T) { checkSpecSet(t, s) })
	}
	t.Logf("%d example files, %d documents (%d rules, %d filters, %d correlations) in %d taxonomies",
		files, docs, kinds[sigma.KindRule], kinds[sigma.KindFilter], kinds[sigma.KindCorrelation], len(sets))
	// The folder cannot shrink unnoticed: it must keep every kind of
	// document and every correlation type of the specification.
	for k, name := range map[sigma.DocKind]string{sigma.KindRule: "rule", sigma.KindFilter: "filter", sigma.KindCorrelation: "correlation"} {
		if kinds[k] == 0 {
			t.Errorf("no example %s", name)
		}
	}
	for _, ct := range []string{sigma.EventCount, sigma.ValueCount, sigma.Temporal, sigma.TemporalOrdered,
		sigma.ValueSum, sigma.ValueAvg, sigma.ValuePercentile} {
		if !corrTypes[ct] {
			t.Errorf("no example of correlation type %s", ct)
		}
	}
}

func checkSpecSet(t *testing.T, s *specSet) {
	coll, errs := sigma.NewCollection(s.all())
	for _, e := range errs {
		t.Errorf("collection: %v", e)
	}
	// Every fixture stands in for a rule an example names.
	for _, f := range s.fixtures {
		if !namedByExample(s, f) {
			t.Errorf("fixture %s (%s) is named by no example of taxonomy %s", f.Title, f.File, s.taxonomy)
		}
	}

	db := duckdbtest.Open(t)
	created := map[string]bool{}
	for _, r := range s.all() {
		if r.Kind == sigma.KindCorrelation {
			continue
		}
		tbl, ok := specMapping{}.Table(r.Logsource)
		if !ok || created[tbl.Name] {
			continue // a missing table fails the compile below
		}
		created[tbl.Name] = true
		db.CreateTable(t, tbl)
	}
	ctx := context.Background()

	for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
		opts := sigma.Options{Dialect: d, Mapping: specMapping{}, Collection: coll}
		for _, r := range s.examples {
			var sql string
			switch r.Kind {
			case sigma.KindRule:
				q, err := sigma.Compile(r, opts)
				if err != nil {
					t.Errorf("[%s] %s: rule does not convert: %v", d.Name(), r.File, err)
					continue
				}
				sql = sigma.SelectSQL(d, q)
			case sigma.KindCorrelation:
				q, err := sigma.CompileCorrelation(r, opts)
				if err != nil {
					t.Errorf("[%s] %s: correlation does not convert: %v", d.Name(), r.File, err)
					continue
				}
				sql = q.SQL
			case sigma.KindFilter:
				if n := filteredRules(t, s, r, d); n == 0 {
					t.Errorf("[%s] %s: filter changes the SQL of no rule", d.Name(), r.File)
				}
				continue
			}
			if sql == "" {
				t.Errorf("[%s] %s: empty SQL", d.Name(), r.File)
				continue
			}
			if d.Name() == "duckdb" {
				if _, err := db.Query(ctx, sql); err != nil {
					t.Errorf("%s: DuckDB rejects the SQL: %v\n%s", r.File, err, sql)
				}
			}
		}
	}
}

// namedByExample reports whether a correlation or filter of the set's
// examples names r by id or name.
func namedByExample(s *specSet, r *sigma.Rule) bool {
	for _, x := range s.examples {
		var refs []string
		switch x.Kind {
		case sigma.KindCorrelation:
			refs = x.Correlation.Rules
		case sigma.KindFilter:
			refs = x.Filter.Rules
		}
		for _, ref := range refs {
			if ref == r.ID || (r.Name != "" && ref == r.Name) {
				return true
			}
		}
	}
	return false
}

// filteredRules compiles every detection rule of the set with and without
// the filter and counts those whose SQL the filter changes; every rule
// must compile either way.
func filteredRules(t *testing.T, s *specSet, filter *sigma.Rule, d sigma.Dialect) int {
	t.Helper()
	with, _ := sigma.NewCollection(s.all())
	var rest []*sigma.Rule
	for _, r := range s.all() {
		if r != filter {
			rest = append(rest, r)
		}
	}
	without, _ := sigma.NewCollection(rest)
	n := 0
	for _, r := range s.all() {
		if r.Kind != sigma.KindRule {
			continue
		}
		a, err := sigma.Compile(r, sigma.Options{Dialect: d, Mapping: specMapping{}, Collection: with})
		if err != nil {
			t.Errorf("[%s] %s with filter %s: %v", d.Name(), r.File, filter.File, err)
			continue
		}
		b, err := sigma.Compile(r, sigma.Options{Dialect: d, Mapping: specMapping{}, Collection: without})
		if err != nil {
			t.Errorf("[%s] %s: %v", d.Name(), r.File, err)
			continue
		}
		if a.Where != b.Where {
			n++
		}
	}
	return n
}
