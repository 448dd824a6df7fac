package dashboards_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/dashboards"
	"github.com/vigilhq/vigil/metrics"
	"github.com/vigilhq/vigil/schema"
)

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string     `json:"name"`
			Query      string     `json:"query"`
			Datasource datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource datasource               `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID  string `json:"refId"`
		Expr   string `json:"expr"`
		RawSQL string `json:"rawSql"`
	} `json:"targets"`
}

func load(t *testing.T) map[string]dashboard {
	t.Helper()
	names, err := fs.Glob(dashboards.FS, "*.json")
	if err != nil || len(names) < 2 {
		t.Fatalf("dashboards %v %v", names, err)
	}
	out := map[string]dashboard{}
	for _, n := range names {
		b, _ := fs.ReadFile(dashboards.FS, n)
		dec := json.NewDecoder(strings.NewReader(string(b)))
		var d dashboard
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out[n] = d
	}
	return out
}

// TestDashboardStructure checks what Grafana needs to import a dashboard:
// a title and uid, unique panel ids, panels inside the 24-column grid
// without overlapping, each query panel on the datasource input the
// dashboard declares, each target with a query.
func TestDashboardStructure(t *testing.T) {
	uids := map[string]bool{}
	for name, d := range load(t) {
		if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
			t.Errorf("%s: title %q uid %q schemaVersion %d, %d panels", name, d.Title, d.UID, d.SchemaVersion, len(d.Panels))
		}
		if uids[d.UID] {
			t.Errorf("%s: uid %s used twice", name, d.UID)
		}
		uids[d.UID] = true
		if len(d.Inputs) != 1 || d.Inputs[0].Type != "datasource" {
			t.Fatalf("%s: want one datasource input, have %+v", name, d.Inputs)
		}
		in := d.Inputs[0]
		ids := map[int]bool{}
		cells := map[[2]int]int{}
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %d %q", name, p.ID, p.Title)
			if p.ID <= 0 || ids[p.ID] {
				t.Errorf("%s: id missing or repeated", where)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
				t.Errorf("%s: gridPos %+v outside the grid", where, g)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := cells[[2]int{x, y}]; ok {
						t.Errorf("%s overlaps panel %d at %d,%d", where, other, x, y)
					}
					cells[[2]int{x, y}] = p.ID
				}
			}
			if p.Type == "row" {
				continue
			}
			if p.Title == "" || p.Datasource.Type != in.PluginID || p.Datasource.UID != "${"+in.Name+"}" {
				t.Errorf("%s: datasource %+v, want %s ${%s}", where, p.Datasource, in.PluginID, in.Name)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			for _, tg := range p.Targets {
				if tg.RefID == "" || (tg.Expr == "") == (tg.RawSQL == "") {
					t.Errorf("%s: target %+v needs a refId and one query", where, tg)
				}
				if q := tg.Expr + tg.RawSQL; !balanced(q) {
					t.Errorf("%s: unbalanced brackets in %q", where, q)
				}
			}
		}
	}
}

func balanced(s string) bool {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range s {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pair[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

var metricRE = regexp.MustCompile(`\b(vigil|go|process)_[a-z0-9_]+\b`)

// TestPrometheusDashboardUsesRealMetrics checks every metric a query
// names against the metrics registry, and that every vigil metric family
// appears on some panel.
func TestPrometheusDashboardUsesRealMetrics(t *testing.T) {
	d := load(t)["vigil-server.json"]
	m := metrics.New(metrics.Options{})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := metrics.Names()
	for _, f := range fams {
		known = append(known, f.GetName())
	}
	used := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			names := metricRE.FindAllString(tg.Expr, -1)
			if tg.Expr != "" && len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !slices.Contains(known, n) {
					t.Errorf("panel %q: metric %s does not exist", p.Title, n)
				}
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	for _, n := range metrics.Names() {
		if strings.HasSuffix(n, "_bucket") || strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count") {
			continue
		}
		if !used[n] {
			t.Errorf("metric %s is on no panel", n)
		}
	}
}

var (
	fromRE  = regexp.MustCompile(`(?i)\bFROM\s+([a-z_][a-z0-9_]*)`)
	identRE = regexp.MustCompile(`\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b`)
)

// TestClickHouseDashboardUsesTheSchema checks every table a query reads
// is an event table and every snake_case identifier it names is a
// column of one of those tables (or an alias the query defines).
func TestClickHouseDashboardUsesTheSchema(t *testing.T) {
	d := load(t)["vigil-events-clickhouse.json"]
	queries := []string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries = append(queries, tg.RawSQL)
		}
	}
	for _, v := range d.Templating.List {
		queries = append(queries, v.Query)
	}
	for _, q := range queries {
		var tables []schema.Table
		for _, m := range fromRE.FindAllStringSubmatch(q, -1) {
			tbl, ok := schema.Lookup(m[1])
			if !ok {
				t.Errorf("query reads %s, not an event table: %q", m[1], q)
				continue
			}
			tables = append(tables, tbl)
		}
		if len(tables) == 0 && !strings.Contains(q, "FROM (") {
			t.Errorf("query reads no event table: %q", q)
		}
		for _, id := range identRE.FindAllString(q, -1) {
			if strings.Contains(q, "AS "+id) || strings.Contains(q, "'"+id+"'") {
				continue // an alias or a string
			}
			found := false
			for _, tbl := range tables {
				if tbl.HasColumn(id) || tbl.Name == id {
					found = true
				}
			}
			if !found {
				t.Errorf("query names %s, a column of none of its tables: %q", id, q)
			}
		}
	}
}
