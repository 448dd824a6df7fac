package table

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

func TestOsqueryEventsAndDrops(t *testing.T) {
	var dropped atomic.Uint64
	stats := func() []EventStat {
		return []EventStat{
			{Name: "audit", Publisher: "audit", Type: "publisher", Subscriptions: 2, Events: 40, Active: true,
				KernelLost: 3, SocketOverflows: 1, QueueDropped: 2, SequenceGaps: 4, Incomplete: 5, ParseErrors: 6},
			{Name: "cn_proc", Publisher: "cn_proc", Type: "publisher", Error: "not tried"},
			{Name: "process_events", Publisher: "audit", Type: "subscriber", Subscriptions: 1, Events: 30, Active: true,
				Buffered: 7, BufferDropped: dropped.Load(), BufferExpired: 9},
			{Name: "result_log", Type: "logger", Events: 11, TooLarge: 2},
		}
	}
	e := openTest(t, Options{EventStats: stats})

	wantRows(t, e, `SELECT name, publisher, type, subscriptions, events, refreshes, active FROM osquery_events ORDER BY name`,
		map[string]string{"name": "audit", "publisher": "audit", "type": "publisher", "subscriptions": "2", "events": "40", "refreshes": "0", "active": "1"},
		map[string]string{"name": "cn_proc", "publisher": "cn_proc", "type": "publisher", "subscriptions": "0", "events": "0", "refreshes": "0", "active": "0"},
		map[string]string{"name": "process_events", "publisher": "audit", "type": "subscriber", "subscriptions": "1", "events": "30", "refreshes": "0", "active": "1"},
	)

	dropped.Store(8)
	res := query(t, e, `SELECT * FROM vigil_event_drops WHERE name IN ('audit', 'process_events', 'result_log', 'cn_proc') ORDER BY name`)
	if len(res.Rows) != 4 {
		t.Fatalf("vigil_event_drops rows = %v", res.Rows)
	}
	a, c, p, l := res.Rows[0], res.Rows[1], res.Rows[2], res.Rows[3]
	for k, want := range map[string]string{"kernel_lost": "3", "socket_overflows": "1", "queue_dropped": "2", "sequence_gaps": "4",
		"incomplete": "5", "parse_errors": "6", "proc_gone": "0", "lost": "10", "active": "1", "events": "40"} {
		if a[k] != want {
			t.Errorf("audit %s = %q, want %s", k, a[k], want)
		}
	}
	if c["active"] != "0" || c["error"] != "not tried" {
		t.Errorf("cn_proc row = %v", c)
	}
	for k, want := range map[string]string{"buffered": "7", "buffer_dropped": "8", "buffer_expired": "9", "lost": "8", "publisher": "audit"} {
		if p[k] != want {
			t.Errorf("process_events %s = %q, want %s (counters must be read at query time)", k, p[k], want)
		}
	}
	if l["too_large"] != "2" || l["lost"] != "2" || l["type"] != "logger" {
		t.Errorf("logger row = %v", l)
	}
}

func TestEventStatsTablesEmptyWithoutHook(t *testing.T) {
	e := openTest(t, Options{})
	for _, tb := range []string{"osquery_events", "vigil_event_drops"} {
		if res := query(t, e, "SELECT * FROM "+tb); len(res.Rows) != 0 {
			t.Errorf("%s without EventStats: %v", tb, res.Rows)
		}
	}
}

// TestMaxResultBytes: a query producing 1,000,000 rows (~220 MB as JSON)
// stops at the bound with ErrResultTooLarge, allocating a bounded amount;
// a result under the bound is returned whole.
func TestMaxResultBytes(t *testing.T) {
	e := openTest(t, Options{})
	const huge = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000000) SELECT x, hex(zeroblob(100)) AS pad FROM c`
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := e.Query(WithMaxResultBytes(context.Background(), 1<<20), huge)
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, ErrResultTooLarge) || !strings.Contains(err.Error(), "more than 1048576 bytes") {
		t.Fatalf("error %v, want ErrResultTooLarge", err)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 32<<20 {
		t.Errorf("allocated %d MB for a result bounded to 1 MB", alloc>>20)
	}
	res, err := e.Query(WithMaxResultBytes(context.Background(), 1<<20), `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000) SELECT x, hex(zeroblob(100)) AS pad FROM c`)
	if err != nil || len(res.Rows) != 1000 {
		t.Fatalf("bounded query under the bound: %d rows, %v", len(res.Rows), err)
	}
	size, est := 2, 2
	for _, r := range res.Rows {
		b, _ := json.Marshal(r)
		size += len(b) + 1
		est += RowSize(r) + 1
	}
	if est < size {
		t.Errorf("RowSize underestimates: %d < JSON %d", est, size)
	}
}

func TestRowSizeCoversEscapes(t *testing.T) {
	for _, v := range []string{"", "plain", `<a href="x">&</a>`, "\x00\x01\n\t\\", strings.Repeat("<", 100)} {
		r := map[string]string{"k<": v, "other": "x"}
		b, _ := json.Marshal(r)
		if RowSize(r) < len(b) {
			t.Errorf("RowSize(%q) = %d < JSON %d", v, RowSize(r), len(b))
		}
	}
}
