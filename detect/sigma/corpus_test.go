package sigma_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// sharedDir finds ../shared/<name> next to the repository root.
func sharedDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: reference data %s is missing (%v)", p, err)
	}
	return p
}

type corpusFile struct {
	path string
	data []byte
}

func readCorpus(t testing.TB) []corpusFile {
	root := sharedDir(t, "sigma-rules")
	var files []corpusFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yml") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.Contains(rel, "deprecated") || strings.Contains(rel, "unsupported") {
			return nil
		}
		data, err := os.ReadFile(p)
		files = append(files, corpusFile{rel, data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// corpusPlaceholders configures the placeholders SigmaHQ rules use (with
// the expand modifier), as an operator would.
var corpusPlaceholders = map[string][]string{
	"Administrators":              {"admin*", "adm_*"},
	"Admins_Workstations":         {"ADMIN-WS-*"},
	"ApprovedUserUpn":             {"*@example.com"},
	"Approved_Inviters":           {"it-admin@example.com"},
	"DC-MACHINE-NAME":             {"DC01$", "DC02$"},
	"DomainControllers":           {"DC01", "DC02"},
	"HomeTenantID":                {"00000000-0000-0000-0000-000000000000"},
	"Important_AppIds":            {"00000003-0000-0000-c000-000000000000"},
	"KNOWN_LOCATION":              {"Office HQ"},
	"Known_Location":              {"Office HQ"},
	"Legitimate_Countries":        {"US", "DE"},
	"Legitimate_IP_Ranges":        {"10.*", "192.168.*"},
	"ServerSystems":               {"SRV-*"},
	"UnApprovedDevice":            {"unknown-device"},
	"UnApprovedIp":                {"203.0.113.*"},
	"UnLegitCountries":            {"KP"},
	"Workstations":                {"WS-*"},
	"dc_ip_addresses":             {"10.0.0.10", "10.0.0.11"},
	"dc_machine_accounts":         {"DC01$", "DC02$"},
	"domain_controller_hostnames": {"DC01", "DC02"},
	"internal_domains":            {"example.com"},
	"known_cdcs":                  {"DC01.example.com"},
	"legit_ips":                   {"10.0.0.5"},
	"legtimate_identifiers":       {"svc-okta"},
	"userdomain":                  {"EXAMPLE"},
}

const (
	corpusMinConverted = 3760
	chMaxQuery         = 262144
)

func TestCorpus(t *testing.T) {
	files := readCorpus(t)
	var rules []*sigma.Rule
	for _, f := range files {
		rs, errs := sigma.Parse(f.path, f.data)
		for _, err := range errs {
			t.Errorf("parse: %v", err)
		}
		rules = append(rules, rs...)
	}
	t.Logf("%d files, %d rules parsed", len(files), len(rules))

	db := duckdbtest.Open(t)
	for _, tbl := range schema.SigmaTables() {
		db.CreateTable(t, tbl)
	}
	for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
		t.Run(string(d.Name()), func(t *testing.T) {
			opts := sigma.Options{Dialect: d, Mapping: sigma.CatalogMapping{}, Placeholders: corpusPlaceholders}
			converted := 0
			failures := map[string]int{}
			largest, largestRule := 0, ""
			for _, r := range rules {
				q, err := sigma.Compile(r, opts)
				if err != nil {
					var se *sigma.Error
					kind := "other"
					if e, ok := err.(*sigma.Error); ok {
						se = e
						kind = se.Kind.String()
					}
					failures[kind]++
					t.Logf("not converted: %v", err)
					continue
				}
				converted++
				if n := len(q.Where) + 200; n > largest {
					largest, largestRule = n, r.File
				}
				if d.Name() == "duckdb" {
					sql := "SELECT count(*) FROM " + q.Table + " WHERE " + q.Where
					if _, err := db.Query(context.Background(), sql); err != nil {
						t.Errorf("%s: DuckDB rejected the query: %v", r.File, err)
					}
				}
			}
			kinds := make([]string, 0, len(failures))
			for k, n := range failures {
				kinds = append(kinds, k+"="+strconv.Itoa(n))
			}
			sort.Strings(kinds)
			t.Logf("%s: %d of %d rules converted; not converted: %v; largest query ~%d bytes (%s)",
				d.Name(), converted, len(rules), kinds, largest, largestRule)
			if converted < corpusMinConverted {
				t.Errorf("%d rules converted, want at least %d", converted, corpusMinConverted)
			}
			if d.Name() == "clickhouse" && largest > chMaxQuery {
				t.Errorf("largest ClickHouse query is %d bytes (%s), over max_query_size %d", largest, largestRule, chMaxQuery)
			}
		})
	}
}

// BenchmarkConvertCorpus measures parsing and compiling the whole SigmaHQ
// corpus (one iteration = every rule, for one dialect).
func BenchmarkConvertCorpus(b *testing.B) {
	files := readCorpus(b)
	for _, d := range []sigma.Dialect{sigma.DuckDB{}, sigma.ClickHouse{}} {
		b.Run(string(d.Name()), func(b *testing.B) {
			opts := sigma.Options{Dialect: d, Mapping: sigma.CatalogMapping{}, Placeholders: corpusPlaceholders}
			var rules int
			for b.Loop() {
				rules = 0
				for _, f := range files {
					rs, _ := sigma.Parse(f.path, f.data)
					for _, r := range rs {
						if _, err := sigma.Compile(r, opts); err == nil {
							rules++
						}
					}
				}
			}
			b.ReportMetric(float64(rules), "rules/op")
		})
	}
}
