package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Query names an agent might send to break out of a view's definition.
var hostileQueries = []string{
	"x' OR '1'='1",
	`q"; DROP TABLE query_results; --`,
	`q\'; DROP TABLE query_results; --`,
	"Weird Query-Name!",
}

// testResultViews: every query with result rows gets a view
// results_<query> with the common columns and one column per result
// column, for its own rows only, whatever the query name holds.
func testResultViews(t *testing.T, b Backend) {
	const host = "h-views"
	rr := []vigil.ResultRow{
		{ID: "rv-1", HostID: host, Query: "processes", Action: "snapshot", Time: base, Epoch: 1, Counter: 2,
			Columns: map[string]string{"pid": "1", "name": "init"}},
		{ID: "rv-2", HostID: host, Query: "processes", Action: "snapshot", Time: base, Epoch: 1, Counter: 2,
			Columns: map[string]string{"pid": "2", "name": "kthreadd 'q\" \\ ünï"}},
		// A name that is not an identifier is left out; one equal to a
		// common column is renamed col_<name>; of two names equal but for
		// case, the first in byte order stays.
		{ID: "rv-3", HostID: host, Query: "file_events", Action: "added", Time: base,
			Columns: map[string]string{"Path": "/etc/passwd", "path": "dropped", "action": "UPDATED", "bad col": "x", "1x": "y"}},
	}
	for i, q := range hostileQueries {
		rr = append(rr, vigil.ResultRow{ID: fmt.Sprintf("rv-h%d", i), HostID: host, Query: q, Action: "added", Time: base,
			Columns: map[string]string{"v": fmt.Sprint(i)}})
	}
	mustAppend(t, b, vigil.Batch{Results: rr})

	rows := mustQuery(t, b, "SELECT pid, name, query_name, action, epoch, counter, event_time FROM results_processes WHERE host_id = ? ORDER BY pid", host)
	if len(rows.Rows) != 2 {
		t.Fatalf("results_processes: %d rows, want 2", len(rows.Rows))
	}
	for i, m := range rows.Maps() {
		checkValue(t, "pid", m["pid"], rr[i].Columns["pid"])
		checkValue(t, "name", m["name"], rr[i].Columns["name"])
		checkValue(t, "query_name", m["query_name"], "processes")
		checkValue(t, "action", m["action"], "snapshot")
		checkValue(t, "epoch", m["epoch"], int64(1))
		checkValue(t, "counter", m["counter"], int64(2))
		checkValue(t, "event_time", m["event_time"], base)
	}

	rows = mustQuery(t, b, "SELECT * FROM results_file_events")
	want := append(slices.Clone(store.ResultViewFixedColumns), "Path", "col_action")
	if !slices.Equal(rows.Columns, want) {
		t.Errorf("results_file_events columns %v, want %v", rows.Columns, want)
	}
	if len(rows.Rows) == 1 {
		m := rows.Maps()[0]
		checkValue(t, "Path", m["Path"], "/etc/passwd")
		checkValue(t, "col_action", m["col_action"], "UPDATED")
		checkValue(t, "action", m["action"], "added")
	} else {
		t.Errorf("results_file_events: %d rows, want 1", len(rows.Rows))
	}

	for i, q := range hostileQueries {
		view := store.ResultViewName(q)
		rows := mustQuery(t, b, "SELECT query_name, v FROM "+view)
		if len(rows.Rows) != 1 {
			t.Errorf("%s (query %q): %d rows, want 1", view, q, len(rows.Rows))
			continue
		}
		checkValue(t, view+" query_name", rows.Rows[0][0], q)
		checkValue(t, view+" v", rows.Rows[0][1], fmt.Sprint(i))
	}
	if n := count(t, b, schema.ResultsTable); n != int64(len(rr)) {
		t.Errorf("%s has %d rows, want %d", schema.ResultsTable, n, len(rr))
	}
	st, err := b.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + len(hostileQueries); st.ResultViews.Views != want || st.ResultViews.Refused != 0 {
		t.Errorf("Stats.ResultViews = %+v, want %d views, none refused", st.ResultViews, want)
	}
}

// testResultViewsGrow: a column name a query's rows did not have before
// becomes a column of its view, with the earlier columns kept.
func testResultViewsGrow(t *testing.T, b Backend) {
	mustAppend(t, b, vigil.Batch{Results: []vigil.ResultRow{
		{ID: "g-1", HostID: "h1", Query: "users", Action: "snapshot", Time: base, Columns: map[string]string{"uid": "0", "username": "root"}},
	}})
	if rows := mustQuery(t, b, "SELECT * FROM results_users"); slices.Contains(rows.Columns, "shell") {
		t.Fatalf("results_users has a shell column before any row had one: %v", rows.Columns)
	}
	mustAppend(t, b, vigil.Batch{Results: []vigil.ResultRow{
		{ID: "g-2", HostID: "h1", Query: "users", Action: "snapshot", Time: base, Columns: map[string]string{"uid": "1000", "username": "u", "shell": "/bin/sh"}},
	}})
	rows := mustQuery(t, b, "SELECT uid, username, shell FROM results_users WHERE uid = ?", "1000")
	if len(rows.Rows) != 1 {
		t.Fatalf("results_users after a new column: %d rows, want 1", len(rows.Rows))
	}
	checkValue(t, "username", rows.Rows[0][1], "u")
	checkValue(t, "shell", rows.Rows[0][2], "/bin/sh")
	if n := len(mustQuery(t, b, "SELECT uid FROM results_users").Rows); n != 2 {
		t.Errorf("results_users: %d rows, want 2", n)
	}
}
