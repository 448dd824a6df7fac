package detect_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/dashboards"
	"github.com/vigilhq/vigil/detect/internal/clickhousetest"
	"github.com/vigilhq/vigil/schema"
)

// TestClickHouseDashboardQueriesRun runs every query of the ClickHouse
// dashboard, with Grafana's macros expanded as the ClickHouse plugin
// does, against a real ClickHouse holding the event tables. It lives
// here because the ClickHouse test server is detect's internal package.
func TestClickHouseDashboardQueriesRun(t *testing.T) {
	b, err := fs.ReadFile(dashboards.FS, "vigil-events-clickhouse.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ RawSQL string }
		}
		Templating struct{ List []struct{ Query string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	ch := clickhousetest.Start(t)
	now := time.Now().UTC().Truncate(time.Second)
	for _, name := range []string{"process_creation", "network_connection", "file_event", "authentication"} {
		tbl, _ := schema.Lookup(name)
		ch.CreateTable(t, tbl)
		ch.Insert(t, name, []map[string]any{{"event_id": name + "-1", "host_id": "h1", "hostname": "web-1",
			"event_time": now.Add(-time.Minute), "ingested_at": now, "seq": 1}})
	}
	expand := strings.NewReplacer(
		"$__timeFilter(event_time)", "event_time >= toDateTime('"+now.Add(-time.Hour).Format(time.DateTime)+"') AND event_time <= toDateTime('"+now.Add(time.Hour).Format(time.DateTime)+"')",
		"${hostname:singlequote}", "'web-1','db-1'")
	n := 0
	run := func(title, q string) {
		n++
		rows, err := ch.Query(context.Background(), expand.Replace(q))
		if err != nil {
			t.Errorf("panel %q: %v\n%s", title, err, q)
			return
		}
		if len(rows.Rows) == 0 {
			t.Errorf("panel %q: no rows over a store with an event in every table", title)
		}
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			run(p.Title, tg.RawSQL)
		}
	}
	for _, v := range d.Templating.List {
		run("variable", v.Query)
	}
	if n < 10 {
		t.Errorf("only %d queries", n)
	}
}
