package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store/duckdb"
)

// appenderFunc is a hand-written fake store.Appender.
type appenderFunc func(ctx context.Context, b vigil.Batch) error

func (f appenderFunc) Append(ctx context.Context, b vigil.Batch) error { return f(ctx, b) }

var host = vigil.Host{ID: "h1", Identifier: "web1", Hostname: "web1.example.net"}

func procLine(name string, counter, pid int, cmd string) json.RawMessage {
	l := osquery.ResultLine{
		Name: name, HostIdentifier: "web1", UnixTime: 1767225600, Epoch: 1, Counter: osquery.Int(counter),
		Action: "added",
		Columns: map[string]string{"pid": fmt.Sprint(pid), "path": "/usr/bin/curl", "cmdline": cmd,
			"parent": "1", "uid": "1000", "euid": "1000", "auid": "1000", "gid": "1000", "egid": "1000",
			"cwd": "/home/u", "time": fmt.Sprint(1767225600 + pid%60), "syscall": "execve"},
	}
	b, err := json.Marshal(l)
	if err != nil {
		panic(err)
	}
	return b
}

func openStore(t testing.TB) *duckdb.Store {
	t.Helper()
	opts := duckdb.Options{Path: filepath.Join(t.TempDir(), "events.duckdb")}
	if os.Getenv("VIGIL_BENCH_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := duckdb.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestEndToEndDuckDB sends osquery lines through ingest into a real DuckDB
// file and queries them back, including a replay of the same request.
func TestEndToEndDuckDB(t *testing.T) {
	s := openStore(t)
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ing := ingest.New(ingest.Options{
		Appender:   s,
		QueryTable: func(q string) string { return map[string]string{"procs": "process_events"}[q] },
		Now:        func() time.Time { return clock },
	})
	ctx := context.Background()
	lines := []json.RawMessage{
		procLine("procs", 1, 100, "curl http://example.com/x | sh"),
		procLine("procs", 1, 101, "ls -la"),
		json.RawMessage(`{"broken`),
		procLine("procs", 1, 102, `bash -c "echo 'quoted' \\ %_"`),
	}
	for range 2 { // a replay after a lost acknowledgement
		if err := ing.Log(ctx, host, "result", lines); err != nil {
			t.Fatalf("Log: %v", err)
		}
	}
	if err := ing.Log(ctx, host, "status", []json.RawMessage{
		json.RawMessage(`{"hostIdentifier":"web1","unixTime":1767225601,"severity":2,"filename":"x.cpp","line":7,"message":"boom"}`),
	}); err != nil {
		t.Fatalf("Log status: %v", err)
	}

	r, err := s.Query(ctx, `SELECT process_pid, process_command_line, process_name, hostname, user_id, event_time
		FROM process_creation WHERE host_id = ? ORDER BY seq`, host.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 3 {
		t.Fatalf("process_creation: %d rows, want 3 (replay deduplicated): %v", len(r.Rows), r.Rows)
	}
	m := r.Maps()[2]
	if m["process_pid"] != int64(102) || m["process_command_line"] != `bash -c "echo 'quoted' \\ %_"` ||
		m["process_name"] != "curl" || m["hostname"] != host.Hostname || m["user_id"] != int64(1000) {
		t.Errorf("row: %v", m)
	}
	if got, want := m["event_time"].(time.Time), time.Unix(1767225600+102%60, 0); !got.Equal(want) {
		t.Errorf("event_time %v, want the row's time %v", got, want)
	}
	// LIKE with an escape finds the literal text.
	r, err = s.Query(ctx, `SELECT count(*) FROM process_creation WHERE process_command_line LIKE ? ESCAPE '\'`, `%| sh`)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(1) {
		t.Errorf("LIKE '%%| sh': %v rows", r.Rows[0][0])
	}
	r, err = s.Query(ctx, `SELECT query_name, action, count(*) FROM query_results GROUP BY ALL ORDER BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{"__status", "status", int64(1)}, {"procs", "added", int64(3)}}
	if fmt.Sprint(r.Rows) != fmt.Sprint(want) {
		t.Errorf("query_results: %v, want %v", r.Rows, want)
	}
	st := ing.Stats()
	if st.LinesRejected != 2 || st.Rejected[ingest.ReasonMalformed] != 2 || st.LinesAppended != 7 || st.RowsAppended != 13 || !st.LastAppended.Equal(clock) {
		t.Errorf("stats: %+v", st)
	}
}

func TestAppenderFailureIsUnavailable(t *testing.T) {
	boom := errors.New("disk on fire")
	ing := ingest.New(ingest.Options{Appender: appenderFunc(func(context.Context, vigil.Batch) error { return boom })})
	err := ing.Log(context.Background(), host, "result", []json.RawMessage{procLine("q", 1, 1, "x")})
	if !errors.Is(err, vigil.ErrUnavailable) || !errors.Is(err, boom) {
		t.Errorf("Log: %v, want wrapping ErrUnavailable and the store's error", err)
	}
	invalid := fmt.Errorf("bad column: %w", vigil.ErrInvalid)
	ing = ingest.New(ingest.Options{Appender: appenderFunc(func(context.Context, vigil.Batch) error { return invalid })})
	err = ing.Log(context.Background(), host, "result", []json.RawMessage{procLine("q", 1, 1, "x")})
	if !errors.Is(err, vigil.ErrInvalid) || errors.Is(err, vigil.ErrUnavailable) {
		t.Errorf("Log: %v, want ErrInvalid only", err)
	}
	if st := ing.Stats(); st.StoreRejected != 1 || st.RowsAppended != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnknownLogType(t *testing.T) {
	called := false
	ing := ingest.New(ingest.Options{Appender: appenderFunc(func(context.Context, vigil.Batch) error { called = true; return nil })})
	err := ing.Log(context.Background(), host, "snapshot", []json.RawMessage{procLine("q", 1, 1, "x")})
	if !errors.Is(err, vigil.ErrInvalid) || called {
		t.Errorf("Log: %v (appender called %v), want ErrInvalid and no append", err, called)
	}
	if st := ing.Stats(); st.Rejected[ingest.ReasonUnknownType] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestBackpressure: while the store holds MaxPendingRows, further batches
// fail fast with ErrUnavailable instead of queueing.
func TestBackpressure(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ing := ingest.New(ingest.Options{
		MaxPendingRows: 3,
		Appender: appenderFunc(func(ctx context.Context, b vigil.Batch) error {
			entered <- struct{}{}
			<-release
			return nil
		}),
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	var firstErr error
	go func() {
		defer wg.Done()
		firstErr = ing.Log(ctx, host, "result", []json.RawMessage{procLine("q", 1, 1, "a"), procLine("q", 1, 2, "b")})
	}()
	<-entered
	err := ing.Log(ctx, host, "result", []json.RawMessage{procLine("q", 1, 3, "c"), procLine("q", 1, 4, "d")})
	if !errors.Is(err, vigil.ErrUnavailable) {
		t.Errorf("second Log while the store is full: %v, want ErrUnavailable", err)
	}
	close(release)
	wg.Wait()
	if firstErr != nil {
		t.Errorf("first Log: %v", firstErr)
	}
	// Capacity is back.
	if err := ing.Log(ctx, host, "result", []json.RawMessage{procLine("q", 1, 3, "c")}); err != nil {
		t.Errorf("Log after release: %v", err)
	}
}

func TestQueryTableResolution(t *testing.T) {
	cases := []struct {
		name   string
		qt     map[string]string
		tables []string // event tables of the batch
	}{
		{"process_events", nil, []string{"process_creation"}},
		{"pack_ir_process_events", nil, []string{"process_creation"}},
		{"pack_my_pack_socket_events", nil, []string{"network_connection"}},
		{"pack_x_processes", nil, nil},
		{"processes_events", nil, nil},
		{"my_process_events", nil, nil}, // only pack names are split
		{"execs", map[string]string{"execs": "process_events"}, []string{"process_creation"}},
		// The config is the truth when it knows the table.
		{"pack_a_process_events", map[string]string{"pack_a_process_events": "processes"}, nil},
	}
	for _, c := range cases {
		var got []string
		opts := ingest.Options{Appender: appenderFunc(func(_ context.Context, b vigil.Batch) error {
			for _, e := range b.Events {
				got = append(got, e.Table)
			}
			return nil
		})}
		if c.qt != nil {
			opts.QueryTable = func(q string) string { return c.qt[q] }
		}
		if err := ingest.New(opts).Log(context.Background(), host, "result", []json.RawMessage{procLine(c.name, 1, 1, "x")}); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(c.tables, ",") {
			t.Errorf("%s: events in %v, want %v", c.name, got, c.tables)
		}
	}
}

func TestRemovedRowsAreNotEvents(t *testing.T) {
	var b vigil.Batch
	ing := ingest.New(ingest.Options{Appender: appenderFunc(func(_ context.Context, x vigil.Batch) error { b = x; return nil })})
	line := `{"diffResults":{"added":[{"pid":"1","path":"/a"}],"removed":[{"pid":"2","path":"/b"}]},"name":"process_events","unixTime":1767225600}`
	if err := ing.Log(context.Background(), host, "result", []json.RawMessage{json.RawMessage(line)}); err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 2 || len(b.Events) != 1 || b.Events[0].Fields["process_pid"] != int64(1) {
		t.Errorf("batch: %d results, events %+v", len(b.Results), b.Events)
	}
	if b.Results[0].ID == b.Results[1].ID {
		t.Error("added and removed rows share an id")
	}
}

func TestLineLimits(t *testing.T) {
	ing := ingest.New(ingest.Options{
		MaxLineBytes: 300, MaxRowsPerLine: 2,
		Appender: appenderFunc(func(context.Context, vigil.Batch) error { return nil }),
	})
	big := json.RawMessage(`{"action":"added","name":"q","unixTime":1,"columns":{"x":"` + strings.Repeat("a", 400) + `"}}`)
	many := json.RawMessage(`{"action":"snapshot","name":"q","unixTime":1,"snapshot":[{},{},{}]}`)
	if err := ing.Log(context.Background(), host, "result", []json.RawMessage{big, many}); err != nil {
		t.Fatal(err)
	}
	st := ing.Stats()
	if st.Rejected[ingest.ReasonTooLarge] != 1 || st.Rejected[ingest.ReasonTooManyRows] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestParallelDecodeKeepsOrder: a batch big enough to be decoded on all
// CPUs gives the same batch and counts as decoding it in small pieces.
func TestParallelDecodeKeepsOrder(t *testing.T) {
	lines := benchLines(7, 10_000)
	for i := 0; i < len(lines); i += 997 {
		lines[i] = json.RawMessage(`{"bad":`)
	}
	whole := ingest.New(ingest.Options{})
	got, err := whole.Decode(host, "result", lines)
	if err != nil {
		t.Fatal(err)
	}
	pieces := ingest.New(ingest.Options{})
	var want vigil.Batch
	for i := 0; i < len(lines); i += 1000 {
		b, err := pieces.Decode(host, "result", lines[i:min(i+1000, len(lines))])
		if err != nil {
			t.Fatal(err)
		}
		want.Results = append(want.Results, b.Results...)
		want.Events = append(want.Events, b.Events...)
	}
	if len(got.Results) != len(want.Results) || len(got.Events) != len(want.Events) {
		t.Fatalf("parallel: %d results %d events; sequential: %d, %d", len(got.Results), len(got.Events), len(want.Results), len(want.Events))
	}
	for i := range got.Results {
		if got.Results[i].ID != want.Results[i].ID || got.Events[i].ID != want.Events[i].ID {
			t.Fatalf("row %d differs", i)
		}
	}
	gs, ws := whole.Stats(), pieces.Stats()
	if gs.LinesAccepted != ws.LinesAccepted || gs.LinesRejected != 11 || ws.LinesRejected != 11 || gs.Rejected[ingest.ReasonMalformed] != 11 {
		t.Errorf("stats: parallel %+v, sequential %+v", gs, ws)
	}
}

// The raw results table keeps the host name and osquery's epoch and
// counter of every row, status lines included (epoch and counter 0).
func TestResultRowMetadata(t *testing.T) {
	ing := ingest.New(ingest.Options{})
	b, err := ing.Decode(host, "result", []json.RawMessage{procLine("procs", 77, 1, "a"), procLine("procs", 78, 2, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 2 {
		t.Fatalf("%d results, want 2", len(b.Results))
	}
	for i, r := range b.Results {
		if r.Hostname != host.Hostname || r.Epoch != 1 || r.Counter != int64(77+i) {
			t.Errorf("result %d: hostname %q epoch %d counter %d, want %q 1 %d", i, r.Hostname, r.Epoch, r.Counter, host.Hostname, 77+i)
		}
	}

	s := openStore(t)
	ing = ingest.New(ingest.Options{Appender: s})
	ctx := context.Background()
	if err := ing.Log(ctx, host, "result", []json.RawMessage{procLine("procs", 1<<33, 5, "c")}); err != nil {
		t.Fatal(err)
	}
	if err := ing.Log(ctx, host, "status", []json.RawMessage{
		json.RawMessage(`{"hostIdentifier":"web1","unixTime":1767225601,"severity":0,"filename":"x.cpp","line":7,"message":"hi"}`),
	}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, `SELECT action, hostname, epoch, counter FROM query_results ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{"added", host.Hostname, int64(1), int64(1 << 33)}, {"status", host.Hostname, int64(0), int64(0)}}
	if fmt.Sprint(r.Rows) != fmt.Sprint(want) {
		t.Errorf("query_results: %v, want %v", r.Rows, want)
	}
}

// Event ids are the stores' dedupe key across versions: a replay by a
// newer server must give the ids an older one stored. These values were
// computed by the first implementation of schema.EventID.
func TestEventIDStable(t *testing.T) {
	many := map[string]string{}
	for i := range 40 {
		many[fmt.Sprint("k", i)] = fmt.Sprint(i * i)
	}
	for _, c := range []struct{ got, want string }{
		{schema.EventID("h1", "pack_x_process_events", 1, 1<<40, "added", 3,
			map[string]string{"pid": "1", "path": "/bin/sh", "cmdline": "a 'b' ü", "": ""}), "b81ab904b644b9f4ad2ff65d28856484"},
		{schema.EventID("", "", 0, -5, "", 0, nil), "7c292078af80557b0991f59807faf730"},
		{schema.EventID("h", "q", 2, 3, "snapshot", 7, many), "3739281924ba2f796a4854f5bc4e014e"},
	} {
		if c.got != c.want {
			t.Errorf("EventID %s, want %s", c.got, c.want)
		}
	}
}
