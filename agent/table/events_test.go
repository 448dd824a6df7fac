package table

import (
	"context"
	"strconv"
	"sync"
	"testing"
)

// fakeEvents is an in-memory EventSource: rows get ids 1, 2, 3, ...
type fakeEvents struct {
	mu   sync.Mutex
	rows map[string][]map[string]string
}

func (f *fakeEvents) add(table string, r map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rows == nil {
		f.rows = map[string][]map[string]string{}
	}
	f.rows[table] = append(f.rows[table], r)
}

func (f *fakeEvents) Rows(table string, after uint64) ([]map[string]string, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := f.rows[table]
	if after >= uint64(len(all)) {
		return nil, after
	}
	return append([]map[string]string(nil), all[after:]...), uint64(len(all))
}

var _ EventSource = (*fakeEvents)(nil)

func TestEventTablesOncePerConsumer(t *testing.T) {
	ev := &fakeEvents{}
	e := openTest(t, Options{Events: ev})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		ev.add("process_events", map[string]string{"pid": strconv.Itoa(i), "path": "/bin/p" + strconv.Itoa(i), "time": "1700000000", "eid": strconv.Itoa(i)})
	}
	pids := func(res Result) []string {
		var out []string
		for _, r := range res.Rows {
			out = append(out, r["pid"])
		}
		return out
	}
	res, err := e.QueryAs(ctx, "execs", "SELECT pid, path FROM process_events")
	if err != nil {
		t.Fatal(err)
	}
	if got := pids(res); len(got) != 3 || got[0] != "1" || got[2] != "3" {
		t.Fatalf("first run: pids %v, want [1 2 3]", got)
	}
	if res.Rows[1]["path"] != "/bin/p2" {
		t.Errorf("path = %q", res.Rows[1]["path"])
	}
	res, _ = e.QueryAs(ctx, "execs", "SELECT pid FROM process_events")
	if len(res.Rows) != 0 {
		t.Errorf("second run returned %v again", pids(res))
	}
	ev.add("process_events", map[string]string{"pid": "4"})
	// Another consumer sees everything; plain Query sees everything.
	res, _ = e.QueryAs(ctx, "other", "SELECT pid FROM process_events")
	if len(res.Rows) != 4 {
		t.Errorf("other consumer: %v, want 4 rows", pids(res))
	}
	res = query(t, e, "SELECT pid FROM process_events")
	if len(res.Rows) != 4 {
		t.Errorf("Query: %v, want 4 rows", pids(res))
	}
	// A failing query does not advance the cursor.
	if _, err := e.QueryAs(ctx, "execs", "SELECT pid, abs('x', 'y') FROM process_events"); err == nil {
		t.Fatal("a bad query succeeded")
	}
	if _, err := e.QueryAs(ctx, "execs", "SELECT pid, nosuchcolumn FROM process_events"); err == nil {
		t.Fatal("a bad query succeeded")
	}
	res, _ = e.QueryAs(ctx, "execs", "SELECT pid FROM process_events")
	if got := pids(res); len(got) != 1 || got[0] != "4" {
		t.Errorf("after failures: %v, want [4]", got)
	}
	// Scanning the table twice in one query sees the same rows.
	ev.add("process_events", map[string]string{"pid": "5"})
	res, _ = e.QueryAs(ctx, "pairs", "SELECT a.pid AS a, b.pid AS b FROM process_events a, process_events b")
	if len(res.Rows) != 25 {
		t.Errorf("self join: %d rows, want 25", len(res.Rows))
	}
	// Hidden columns come through when named.
	res = query(t, e, "SELECT eid FROM process_events WHERE pid = 2")
	if len(res.Rows) != 1 || res.Rows[0]["eid"] != "2" {
		t.Errorf("eid: %v", res.Rows)
	}
}

func TestEventTablesWithoutSource(t *testing.T) {
	e := openTest(t, Options{})
	res, err := e.QueryAs(context.Background(), "x", "SELECT * FROM process_events")
	if err != nil || len(res.Rows) != 0 {
		t.Errorf("no source: %v rows, err %v", len(res.Rows), err)
	}
	if _, err := e.QueryAs(context.Background(), "", "SELECT 1"); err == nil {
		t.Error("empty consumer accepted")
	}
}
