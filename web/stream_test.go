package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/state/pgtest"
)

type controlOptions = control.Options

func controlTarget(ids ...string) control.Target { return control.Target{Hosts: ids} }

// TestStreamEndToEnd runs a live query from the people API to fake agents
// speaking the osquery API over TLS, and follows it as server-sent events.
func TestStreamEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testStreamEndToEnd(t, newEnv(t, nil)) })
	t.Run("postgres", func(t *testing.T) { testStreamEndToEnd(t, newEnvAt(t, pgtest.URL(t), nil)) })
}

func testStreamEndToEnd(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	good := e.enroll("web-01", true)
	good.answer = func(sql string) ([]map[string]string, int, string) {
		return []map[string]string{{"name": "sshd", "pid": "812"}, {"name": "cron", "pid": "640"}}, 0, ""
	}
	bad := e.enroll("db-01", true)
	bad.answer = func(sql string) ([]map[string]string, int, string) {
		return nil, 1, "no such table: processez"
	}
	go good.run(ctx)
	go bad.run(ctx)
	stale, _, _ := e.db.EnrollHost(ctx, vigil.Host{Identifier: "old", Hostname: "old", LastSeen: time.Now().Add(-time.Hour)})

	var started QueryStarted
	r := e.do("POST", "/api/v1/queries", e.tokens[state.RoleOperator], QueryRequest{SQL: "SELECT name, pid FROM processes", All: true})
	if r.status != 201 {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	r.decode(t, &started)
	if len(started.Hosts) != 3 || started.ID == "" || r.header.Get("Location") != "/api/v1/queries/"+started.ID {
		t.Fatalf("started %+v", started)
	}

	evs, hdr := e.stream(started.ID, e.tokens[state.RoleViewer], 20*time.Second)
	if ct := hdr.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	results := map[string]ResultData{}
	statuses := map[string]StatusData{}
	var done DoneData
	for _, ev := range evs {
		switch ev.name {
		case "result":
			var d ResultData
			json.Unmarshal([]byte(ev.data), &d)
			results[d.HostID] = d
		case "status":
			var d StatusData
			json.Unmarshal([]byte(ev.data), &d)
			if _, dup := statuses[d.HostID]; dup {
				t.Errorf("two statuses for %s", d.HostID)
			}
			statuses[d.HostID] = d
		case "done":
			json.Unmarshal([]byte(ev.data), &done)
		default:
			t.Errorf("unexpected event %q", ev.name)
		}
	}
	if d := results[good.host.ID]; d.Hostname != "web-01" || len(d.Rows) != 2 || d.Rows[0]["name"] != "sshd" {
		t.Errorf("result of web-01: %+v", d)
	}
	if len(results) != 1 {
		t.Errorf("results from %d hosts, want 1: %+v", len(results), results)
	}
	if s := statuses[good.host.ID]; s.Status != "ok" {
		t.Errorf("web-01 status %+v", s)
	}
	if s := statuses[bad.host.ID]; s.Status != "error" || s.Error != "no such table: processez" || s.Hostname != "db-01" {
		t.Errorf("db-01 status %+v", s)
	}
	if s := statuses[stale.ID]; s.Status != "offline" {
		t.Errorf("old status %+v", s)
	}
	if done != (DoneData{Total: 3, OK: 1, Error: 1, Offline: 1}) {
		t.Errorf("done %+v", done)
	}
	if !strings.Contains(evs[len(evs)-1].name, "done") {
		t.Error("done is not last")
	}

	// Kept after the campaign, with rows, for GET /api/v1/queries/{id}.
	var c state.Campaign
	e.do("GET", "/api/v1/queries/"+started.ID, e.tokens[state.RoleViewer], nil).decode(t, &c)
	if !c.Done || c.SQL != "SELECT name, pid FROM processes" || c.Actor != "operator-user" || len(c.Hosts) != 3 {
		t.Errorf("campaign %+v", c)
	}
	// A late subscriber gets the same story replayed.
	again, _ := e.stream(started.ID, e.tokens[state.RoleViewer], 5*time.Second)
	if len(again) != len(evs) {
		t.Errorf("replay has %d events, live had %d", len(again), len(evs))
	}
	// The start is in the audit log with who, SQL, targets and source.
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "query.start"})
	if len(log) != 1 || log[0].Actor != "operator-user" || log[0].Source == "" ||
		log[0].Detail["sql"] != "SELECT name, pid FROM processes" || len(log[0].Detail["hosts"].([]any)) != 3 {
		t.Errorf("audit %+v", log)
	}
}

// TestStreamTimeout: a host that never answers is reported timeout, and
// the stream ends.
func TestStreamTimeout(t *testing.T) {
	e := newEnv(t, func(co *control.Options, _ *Options) { co.QueryTimeout = 300 * time.Millisecond })
	e.enroll("silent", false)
	var started QueryStarted
	e.do("POST", "/api/v1/queries", e.tokens[state.RoleAdmin], QueryRequest{SQL: "SELECT 1", Hosts: []string{"silent"}}).decode(t, &started)
	evs, _ := e.stream(started.ID, e.tokens[state.RoleAdmin], 10*time.Second)
	if len(evs) != 2 || evs[0].name != "status" || !strings.Contains(evs[0].data, `"timeout"`) || !strings.Contains(evs[1].data, `"timeout":1`) {
		t.Errorf("events %+v", evs)
	}
}

// TestStreamColumnOrder: a live query's rows reach the people API in the
// SELECT's column order, not alphabetically: in the stream's result
// events (live and replayed) and in the stored campaign.
func TestStreamColumnOrder(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testStreamColumnOrder(t, newEnv(t, nil)) })
	t.Run("postgres", func(t *testing.T) { testStreamColumnOrder(t, newEnvAt(t, pgtest.URL(t), nil)) })
}

func testStreamColumnOrder(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := e.enroll("web-01", true)
	a.columns = []string{"pid", "name", "cmdline"}
	a.answer = func(string) ([]map[string]string, int, string) {
		return []map[string]string{{"name": "sshd", "pid": "812", "cmdline": "sshd -D"}, {"name": "cron", "pid": "640", "cmdline": "cron -f"}}, 0, ""
	}
	go a.run(ctx)

	var started QueryStarted
	r := e.do("POST", "/api/v1/queries", e.tokens[state.RoleOperator], QueryRequest{SQL: "SELECT pid, name, cmdline FROM processes", All: true})
	if r.status != 201 {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	r.decode(t, &started)
	const wantData = `{"host_id":"HOST","hostname":"web-01","columns":["pid","name","cmdline"],` +
		`"rows":[{"pid":"812","name":"sshd","cmdline":"sshd -D"},{"pid":"640","name":"cron","cmdline":"cron -f"}]}`
	want := strings.Replace(wantData, "HOST", a.host.ID, 1)
	for _, pass := range []string{"live", "replay"} {
		evs, _ := e.stream(started.ID, e.tokens[state.RoleViewer], 20*time.Second)
		var results []string
		for _, ev := range evs {
			if ev.name == "result" {
				results = append(results, ev.data)
			}
		}
		if len(results) != 1 || results[0] != want {
			t.Errorf("%s result events %q, want [%s]", pass, results, want)
		}
	}
	r = e.do("GET", "/api/v1/queries/"+started.ID, e.tokens[state.RoleViewer], nil)
	if !strings.Contains(string(r.body), `"columns":["pid","name","cmdline"],"rows":[{"pid":"812","name":"sshd","cmdline":"sshd -D"},`) {
		t.Errorf("GET campaign: %s", r.body)
	}
}

// BenchmarkResultEventJSON: encoding one host's result event of 10 rows
// of 10 columns, as the stream does for each host, before (a map per row,
// keys sorted) and after (keys in column order).
func BenchmarkResultEventJSON(b *testing.B) {
	cols := []string{"pid", "name", "path", "cmdline", "state", "uid", "gid", "parent", "start_time", "resident_size"}
	rows := make([]map[string]string, 10)
	for i := range rows {
		rows[i] = map[string]string{}
		for _, c := range cols {
			rows[i][c] = fmt.Sprint(c, "-value-", i)
		}
	}
	type oldResultData struct {
		HostID   string              `json:"host_id"`
		Hostname string              `json:"hostname"`
		Rows     []map[string]string `json:"rows"`
	}
	b.Run("old", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(oldResultData{HostID: "0123456789abcdef", Hostname: "web-01", Rows: rows}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ordered", func(b *testing.B) { // as streamQuery encodes it
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (ResultData{HostID: "0123456789abcdef", Hostname: "web-01", Columns: cols, Rows: rows}).MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// ResultData writes itself as encoding/json would write it, except for the
// order of each row's keys: same escaping, so with sorted columns the very
// same bytes.
func TestResultDataJSON(t *testing.T) {
	type plain struct {
		HostID   string              `json:"host_id"`
		Hostname string              `json:"hostname"`
		Columns  []string            `json:"columns,omitempty"`
		Rows     []map[string]string `json:"rows"`
	}
	rows := []map[string]string{{"a<": "x&y", "b\u2028": "\u2028\xff", "c\"": "é\n"}, nil}
	for _, d := range []ResultData{
		{HostID: "h<1>", Hostname: "web\x01", Columns: []string{"a<", "b\u2028", "c\""}, Rows: rows},
		{HostID: "h", Hostname: "w", Rows: rows},
		{HostID: "h", Hostname: "w", Rows: []map[string]string{}},
		{HostID: "h", Hostname: "w"},
	} {
		got, err := d.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(plain(d))
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	d := ResultData{HostID: "h", Hostname: "w", Columns: []string{"pid", "name"}, Rows: []map[string]string{{"name": "init", "pid": "1"}}}
	if got, _ := json.Marshal(d); string(got) != `{"host_id":"h","hostname":"w","columns":["pid","name"],"rows":[{"pid":"1","name":"init"}]}` {
		t.Errorf("ordered: %s", got)
	}
}

// POST /api/v1/queries with Accept: text/event-stream starts the query and
// streams it: a created event naming it, then the events GET .../stream
// gives, in one request.
func TestStartQueryStream(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testStartQueryStream(t, newEnv(t, nil)) })
	t.Run("postgres", func(t *testing.T) { testStartQueryStream(t, newEnvAt(t, pgtest.URL(t), nil)) })
}

func testStartQueryStream(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ok, bad := e.enroll("web-01", true), e.enroll("web-02", true)
	ok.answer = func(string) ([]map[string]string, int, string) { return []map[string]string{{"one": "1"}}, 0, "" }
	bad.answer = func(string) ([]map[string]string, int, string) { return nil, 1, "no such table: nope" }
	go ok.run(ctx)
	go bad.run(ctx)

	post := func(token string) *http.Request {
		b, _ := json.Marshal(QueryRequest{SQL: "SELECT 1 AS one", All: true})
		req, _ := http.NewRequestWithContext(ctx, "POST", e.people.URL+"/api/v1/queries", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json;q=0.5, text/event-stream")
		return req
	}
	if r, err := e.client.Do(post(e.tokens[state.RoleViewer])); err != nil || r.StatusCode != http.StatusForbidden {
		t.Fatalf("a viewer starting a streamed query: %v %v, want 403", r.StatusCode, err)
	}
	evs, hdr := e.readEvents(post(e.tokens[state.RoleOperator]), http.StatusCreated)
	if len(evs) == 0 || evs[0].name != "created" {
		t.Fatalf("first event %+v, want created", evs)
	}
	var created QueryCreated
	if err := json.Unmarshal([]byte(evs[0].data), &created); err != nil || created.ID == "" || created.Total != 2 || created.Pending != 2 {
		t.Fatalf("created %s (%v)", evs[0].data, err)
	}
	if hdr.Get("Content-Type") != "text/event-stream" || hdr.Get("Location") != "/api/v1/queries/"+created.ID {
		t.Errorf("headers %v", hdr)
	}
	summary := func(evs []sseEvent) string {
		var out []string
		for _, ev := range evs {
			switch ev.name {
			case "result", "status":
				var d struct {
					Hostname string              `json:"hostname"`
					Status   string              `json:"status"`
					Error    string              `json:"error"`
					Rows     []map[string]string `json:"rows"`
				}
				json.Unmarshal([]byte(ev.data), &d)
				out = append(out, fmt.Sprint(ev.name, " ", d.Hostname, " ", d.Status, d.Error, d.Rows))
			case "done":
				out = append(out, "done "+ev.data)
			}
		}
		slices.Sort(out)
		return strings.Join(out, "; ")
	}
	const want = `done {"total":2,"ok":1,"error":1,"timeout":0,"offline":0}; result web-01 [map[one:1]]; ` +
		`status web-01 ok[]; status web-02 errorno such table: nope[]`
	if got := summary(evs[1:]); got != want {
		t.Errorf("streamed events:\n got %s\nwant %s", got, want)
	}
	// The campaign is the one GET .../stream replays.
	replay, _ := e.stream(created.ID, e.tokens[state.RoleViewer], 20*time.Second)
	if got := summary(replay); got != want {
		t.Errorf("replayed events:\n got %s\nwant %s", got, want)
	}
}

// TestStreamSummary follows a live query with ?events=summary: counts as
// hosts answer and done, no rows and no per-host status.
func TestStreamSummary(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast, slow := e.enroll("web-01", true), e.enroll("web-02", true)
	fast.answer = func(string) ([]map[string]string, int, string) { return []map[string]string{{"one": "1"}}, 0, "" }
	// The slow host answers well after a progress tick has told of the fast one.
	slow.answer = func(string) ([]map[string]string, int, string) {
		time.Sleep(4 * progressEvery)
		return nil, 1, "no such table: nope"
	}
	go fast.run(ctx)
	go slow.run(ctx)

	post := func(query string) *http.Request {
		b, _ := json.Marshal(QueryRequest{SQL: "SELECT 1 AS one", All: true})
		req, _ := http.NewRequestWithContext(ctx, "POST", e.people.URL+"/api/v1/queries"+query, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+e.tokens[state.RoleOperator])
		req.Header.Set("Accept", "text/event-stream")
		return req
	}
	for _, bad := range []string{"?events=rows", "?events=SUMMARY"} {
		r := e.do("GET", "/api/v1/queries/nope/stream"+bad, e.tokens[state.RoleViewer], nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "want all or summary") {
			t.Errorf("GET stream%s: %d %s, want 400 naming the choices", bad, r.status, r.body)
		}
		res, err := e.client.Do(post(bad))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("POST%s: %d, want 400", bad, res.StatusCode)
		}
	}
	if qs, err := e.db.ListCampaigns(ctx, 10); err != nil || len(qs) != 0 {
		t.Fatalf("refused requests started %d campaigns (%v)", len(qs), err)
	}

	check := func(what string, evs []sseEvent) {
		t.Helper()
		var names []string
		sawOne := false
		for _, ev := range evs {
			names = append(names, ev.name)
			if ev.name == "progress" {
				var p ProgressData
				if err := json.Unmarshal([]byte(ev.data), &p); err != nil {
					t.Fatalf("%s: progress %s: %v", what, ev.data, err)
				}
				if p.Total != 2 || p.Pending+p.OK+p.Error+p.Timeout+p.Offline != 2 {
					t.Errorf("%s: progress %s does not add up to 2 hosts", what, ev.data)
				}
				sawOne = sawOne || (p.OK == 1 && p.Pending == 1)
			}
		}
		last := evs[len(evs)-1]
		if last.name != "done" || last.data != `{"total":2,"ok":1,"error":1,"timeout":0,"offline":0}` {
			t.Errorf("%s: last event %s %s", what, last.name, last.data)
		}
		for _, n := range names {
			if n != "created" && n != "progress" && n != "done" {
				t.Errorf("%s: events %v: only created, progress and done belong in a summary", what, names)
				break
			}
		}
		if what == "live" && !sawOne {
			t.Errorf("%s: events %v: no progress told of the fast host while the slow one was pending", what, names)
		}
	}
	evs, _ := e.readEvents(post("?events=summary"), http.StatusCreated)
	check("live", evs)
	var created QueryCreated
	json.Unmarshal([]byte(evs[0].data), &created)
	// Replayed after the end, the summary is done at once.
	req, _ := http.NewRequestWithContext(ctx, "GET", e.people.URL+"/api/v1/queries/"+created.ID+"/stream?events=summary", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens[state.RoleViewer])
	replay, _ := e.readEvents(req, http.StatusOK)
	check("replay", replay)
}
