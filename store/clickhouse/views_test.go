package clickhouse_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/store/clickhouse"
)

// chExec runs a statement on the test server outside the store.
func chExec(t *testing.T, db, stmt string) {
	t.Helper()
	resp, err := http.Post(server.URL+"/?database="+url.QueryEscape(db), "text/plain", strings.NewReader(stmt))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s", stmt, msg)
	}
}

// TestResultViewsMigrateFromV1: a database written before result views
// (schema version 1) gets a view for every query in its results table when
// it is opened, and the views survive a reopen.
func TestResultViewsMigrateFromV1(t *testing.T) {
	ctx := context.Background()
	s := open(t, clickhouse.Options{})
	db := fmt.Sprint(mustQuery(t, s, "SELECT currentDatabase()").Rows[0][0])
	rr := []vigil.ResultRow{
		{ID: "m1", HostID: "h", Query: "processes", Action: "snapshot", Time: t0, Columns: map[string]string{"pid": "1", "name": "init"}},
		{ID: "m2", HostID: "h", Query: "processes", Action: "snapshot", Time: t0, Columns: map[string]string{"pid": "2", "cmdline": `x "y":`}},
		{ID: "m3", HostID: "h", Query: "Listening Ports", Action: "snapshot", Time: t0, Columns: map[string]string{"port": "22"}},
	}
	if err := s.Append(ctx, vigil.Batch{Results: rr}); err != nil {
		t.Fatal(err)
	}
	ports := store.ResultViewName("Listening Ports")
	chExec(t, db, "DROP TABLE results_processes")
	chExec(t, db, "DROP TABLE "+ports)
	chExec(t, db, "DROP TABLE "+schema.ResultViewsTable)
	chExec(t, db, "TRUNCATE TABLE vigil_meta")
	chExec(t, db, "INSERT INTO vigil_meta (key, value, at) VALUES ('schema_version', '1', now())")

	for i := range 2 { // the migration, then a plain reopen
		s := open(t, clickhouse.Options{Database: db})
		r := mustQuery(t, s, "SELECT pid, name, cmdline FROM results_processes WHERE pid IN ('1', '2') ORDER BY pid")
		if len(r.Rows) != 2 || r.Rows[0][1] != "init" || r.Rows[1][2] != `x "y":` {
			t.Errorf("results_processes: %v", r.Rows)
		}
		if r := mustQuery(t, s, "SELECT * FROM results_processes"); len(r.Columns) != len(store.ResultViewFixedColumns)+3+i { // uid from the first pass
			t.Errorf("results_processes columns %v: a value was taken for a key", r.Columns)
		}
		if r := mustQuery(t, s, "SELECT port FROM "+ports); len(r.Rows) != 1 || r.Rows[0][0] != "22" {
			t.Errorf("%s: %v", ports, r.Rows)
		}
		if r := mustQuery(t, s, "SELECT max(toInt64(value)) FROM vigil_meta WHERE key = 'schema_version'"); r.Rows[0][0] != int64(schema.Version) {
			t.Errorf("schema version after migration: %v", r.Rows)
		}
		if err := s.Append(ctx, vigil.Batch{Results: []vigil.ResultRow{
			{ID: "m4", HostID: "h", Query: "processes", Action: "snapshot", Time: t0, Columns: map[string]string{"pid": "3", "uid": "0"}},
		}}); err != nil {
			t.Fatal(err)
		}
		if r := mustQuery(t, s, "SELECT uid FROM results_processes WHERE pid = '3'"); len(r.Rows) != 1 || r.Rows[0][0] != "0" {
			t.Errorf("new column after reopen: %v", r.Rows)
		}
	}
}

func mustQuery(t *testing.T, s *clickhouse.Store, q string) *store.Rows {
	t.Helper()
	r, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return r
}
