package web

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store/duckdb"
)

// consoleSources wires the console's optional sources to a real DuckDB
// event store in a temp directory and a fixed rule list.
type consoleSources struct {
	store *duckdb.Store

	mu      sync.Mutex
	toggled map[string]bool // rule id -> last enabled value set
}

const testRuleYAML = `title: Curl Piped To Shell
id: 11111111-2222-3333-4444-555555555555
status: test
level: high
logsource:
    category: process_creation
    product: linux
detection:
    selection:
        CommandLine|contains: '| sh'
    condition: selection
`

func withConsole(t *testing.T) (*consoleSources, func(*control.Options, *Options)) {
	t.Helper()
	st, err := duckdb.Open(context.Background(), duckdb.Options{Path: filepath.Join(t.TempDir(), "events.duckdb")})
	if err != nil {
		t.Fatalf("opening DuckDB: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &consoleSources{store: st, toggled: map[string]bool{}}
	rule := vigil.Rule{ID: "11111111-2222-3333-4444-555555555555", Title: "Curl Piped To Shell", Level: vigil.LevelHigh, Enabled: true, Source: "curl.yml"}
	return cs, func(_ *control.Options, o *Options) {
		o.Events = st
		o.EventsDialect = st.Dialect()
		o.Tables = func() []TableSchema {
			return []TableSchema{{Name: "processes", Columns: []TableColumn{{Name: "pid", Type: "BIGINT"}, {Name: "name", Type: "TEXT"}}}}
		}
		o.Rules = func() []vigil.Rule { return []vigil.Rule{rule} }
		o.RuleSource = func(_ context.Context, id string) ([]byte, error) {
			if id != rule.ID {
				return nil, fmt.Errorf("rule %s: %w", id, vigil.ErrNotFound)
			}
			return []byte(testRuleYAML), nil
		}
		o.SetRuleEnabled = func(_ context.Context, id string, on bool) error {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			cs.toggled[id] = on
			return nil
		}
	}
}

func (cs *consoleSources) toggles() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return fmt.Sprint(cs.toggled)
}

// addEvents appends events through the store's real append path.
func (cs *consoleSources) addEvents(t *testing.T, evs ...vigil.Event) {
	t.Helper()
	if err := cs.store.Append(context.Background(), vigil.Batch{Events: evs}); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func procEvent(id, host string, at time.Time, cmdline string) vigil.Event {
	return vigil.Event{ID: id, Table: "process_creation", HostID: host, Time: at, Fields: map[string]any{
		"process_pid": int64(42), "process_command_line": cmdline, "process_name": "sh", "user_name": "root"}}
}

func TestEventQuery(t *testing.T) {
	cs, mod := withConsole(t)
	e := newEnv(t, mod)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cs.addEvents(t, procEvent("e1", "h1", at, "curl x | sh"), procEvent("e2", "h1", at.Add(time.Second), "ls"))
	tok := e.tokens[state.RoleOperator]

	var rows EventRows
	r := e.do("POST", "/api/v1/events/query", tok, EventQuery{SQL: "SELECT event_id, process_command_line FROM process_creation ORDER BY event_id"})
	r.decode(t, &rows)
	if r.status != 200 || len(rows.Rows) != 2 || rows.Columns[1] != "process_command_line" || rows.Rows[0][1] != "curl x | sh" || rows.Truncated {
		t.Fatalf("query = %d %+v", r.status, rows)
	}
	for _, c := range []struct {
		sql, want string
	}{
		{"", "sql is empty"},
		{"DELETE FROM process_creation", ""},
		{"SELECT nope FROM process_creation", "nope"},
		{"SELECT 1; SELECT 2", ""},
		// The server's files stay out of reach (the store disables
		// DuckDB's external access).
		{"SELECT * FROM read_text('/etc/hostname')", "disabled"},
		{"SELECT * FROM read_csv('/etc/passwd')", "disabled"},
	} {
		r := e.do("POST", "/api/v1/events/query", tok, EventQuery{SQL: c.sql})
		if r.status != 400 || !strings.Contains(r.errorMsg(), c.want) {
			t.Errorf("%q = %d %s, want 400 mentioning %q", c.sql, r.status, r.body, c.want)
		}
	}
	// Nothing was deleted.
	rs, err := cs.store.Query(context.Background(), "SELECT count(*) FROM process_creation")
	if err != nil || fmt.Sprint(rs.Rows[0][0]) != "2" {
		t.Errorf("events after refused writes: %v %v", rs, err)
	}
	// Queries are audited with their SQL.
	log, _ := e.db.AuditLog(context.Background(), state.AuditFilter{Action: "events.query"})
	if len(log) != 6 || !strings.Contains(fmt.Sprint(log[0].Detail), "ORDER BY event_id") { // the empty one is not run
		t.Errorf("explorer audit %+v", log)
	}
	// A server without an event store says so.
	bare := newEnv(t, nil)
	if r := bare.do("POST", "/api/v1/events/query", bare.tokens[state.RoleAdmin], EventQuery{SQL: "SELECT 1"}); r.status != 501 {
		t.Errorf("without a store: %d %s, want 501", r.status, r.body)
	}
}

func TestHostTimeline(t *testing.T) {
	cs, mod := withConsole(t)
	e := newEnv(t, mod)
	ctx := context.Background()
	h, _, err := e.db.EnrollHost(ctx, vigil.Host{Identifier: "tl-1", Hostname: "tl-1"})
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := e.db.EnrollHost(ctx, vigil.Host{Identifier: "tl-2", Hostname: "tl-2"})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cs.addEvents(t,
		procEvent("p-before", h.ID, at.Add(-10*time.Minute), "before"),
		procEvent("p-at", h.ID, at, "curl x | sh"),
		procEvent("p-far", h.ID, at.Add(-2*time.Hour), "too early"),
		procEvent("p-other", other.ID, at, "other host"),
		vigil.Event{ID: "n1", Table: "network_connection", HostID: h.ID, Time: at.Add(time.Minute), Fields: map[string]any{
			"network_action": "connect", "destination_ip": "10.0.0.9", "destination_port": int64(443), "process_pid": int64(42)}},
		vigil.Event{ID: "f1", Table: "file_event", HostID: h.ID, Time: at.Add(2 * time.Minute), Fields: map[string]any{
			"file_action": "created", "file_path": "/tmp/x.sh"}},
		vigil.Event{ID: "a1", Table: "authentication", HostID: h.ID, Time: at.Add(-time.Minute), Fields: map[string]any{
			"auth_type": int64(1112), "auth_message": "op=login acct=alice res=success", "user_name": "alice", "source_ip": "10.0.0.5"}},
	)
	tok := e.tokens[state.RoleOperator]
	var tl struct {
		Events    []TimelineEvent
		Truncated bool
	}
	r := e.do("GET", "/api/v1/hosts/"+h.ID+"/timeline?at="+at.Format(time.RFC3339)+"&before=15m&after=15m", tok, nil)
	r.decode(t, &tl)
	if r.status != 200 {
		t.Fatalf("timeline = %d %s", r.status, r.body)
	}
	var got []string
	for i, ev := range tl.Events {
		got = append(got, ev.Kind+":"+ev.EventID)
		if i > 0 && ev.Time.Before(tl.Events[i-1].Time) {
			t.Errorf("timeline not in time order at %d: %v", i, tl.Events)
		}
	}
	want := "[process:p-before login:a1 process:p-at connection:n1 file:f1]"
	if fmt.Sprint(got) != want {
		t.Errorf("timeline = %v, want %s", got, want)
	}
	if len(tl.Events) == 5 && (tl.Events[2].Fields["process_command_line"] != "curl x | sh" || tl.Events[3].Fields["destination_ip"] != "10.0.0.9") {
		t.Errorf("timeline fields %+v", tl.Events)
	}
	// A wider window reaches the earlier event.
	r = e.do("GET", "/api/v1/hosts/"+h.ID+"/timeline?at="+at.Format(time.RFC3339)+"&before=3h&after=0s", tok, nil)
	r.decode(t, &tl)
	if len(tl.Events) != 4 || tl.Events[0].EventID != "p-far" {
		t.Errorf("3h before: %+v", tl.Events)
	}
	for _, c := range []struct {
		q    string
		want int
	}{
		{"at=yesterday", 400},
		{"at=" + at.Format(time.RFC3339) + "'%20OR%201=1--", 400},
		{"before=-5m", 400},
		{"after=9999h", 400},
	} {
		if r := e.do("GET", "/api/v1/hosts/"+h.ID+"/timeline?"+c.q, tok, nil); r.status != c.want || r.errorMsg() == "" {
			t.Errorf("timeline?%s = %d %s, want %d", c.q, r.status, r.body, c.want)
		}
	}
	// A busy host: the events nearest the centre are kept on each side.
	busy, _, _ := e.db.EnrollHost(ctx, vigil.Host{Identifier: "busy", Hostname: "busy"})
	var many []vigil.Event
	for i := -400; i <= 400; i++ {
		many = append(many, procEvent(fmt.Sprint("b", i), busy.ID, at.Add(time.Duration(i)*time.Second), fmt.Sprint("cmd ", i)))
	}
	cs.addEvents(t, many...)
	r = e.do("GET", "/api/v1/hosts/"+busy.ID+"/timeline?at="+at.Format(time.RFC3339), tok, nil)
	r.decode(t, &tl)
	half := maxTimelineRows / 2
	if !tl.Truncated || len(tl.Events) != 2*half || tl.Events[0].EventID != fmt.Sprint("b", -half+1) ||
		tl.Events[half-1].EventID != "b0" || tl.Events[2*half-1].EventID != fmt.Sprint("b", half) {
		first, last := "", ""
		if len(tl.Events) > 0 {
			first, last = tl.Events[0].EventID, tl.Events[len(tl.Events)-1].EventID
		}
		t.Errorf("busy host: truncated=%v %d events from %s to %s, want %d centred on b0", tl.Truncated, len(tl.Events), first, last, 2*half)
	}
	if r := e.do("GET", "/api/v1/hosts/nope/timeline", tok, nil); r.status != 404 {
		t.Errorf("unknown host = %d, want 404", r.status)
	}
}

func TestBulkAlertUpdate(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var batch []vigil.Alert
	for i := range 5 {
		batch = append(batch, vigil.Alert{RuleID: "r", EventID: fmt.Sprint("e", i), HostID: "h"})
	}
	if _, err := e.db.CommitAlerts(ctx, "r", "process_creation", 5, batch); err != nil {
		t.Fatal(err)
	}
	alerts, _ := e.db.ListAlerts(ctx, state.AlertFilter{})
	ids := []int64{alerts[0].ID, alerts[1].ID, alerts[2].ID, 999999}
	tok := e.tokens[state.RoleOperator]
	if r := e.do("POST", "/api/v1/alerts/bulk", tok, BulkAlertUpdate{IDs: ids, AlertUpdate: AlertUpdate{Status: vigil.AlertClosed}}); r.status != 400 {
		t.Errorf("closing without a reason = %d", r.status)
	}
	if r := e.do("POST", "/api/v1/alerts/bulk", tok, BulkAlertUpdate{AlertUpdate: AlertUpdate{Status: vigil.AlertAcknowledged}}); r.status != 400 {
		t.Errorf("no ids = %d", r.status)
	}
	if r := e.do("POST", "/api/v1/alerts/bulk", tok, BulkAlertUpdate{IDs: ids, AlertUpdate: AlertUpdate{Status: "done"}}); r.status != 400 {
		t.Errorf("bad status = %d", r.status)
	}
	var res struct {
		Updated int
		Failed  map[string]string
	}
	r := e.do("POST", "/api/v1/alerts/bulk", tok, BulkAlertUpdate{IDs: ids, AlertUpdate: AlertUpdate{Status: vigil.AlertClosed, Assignee: "bob", Reason: "benign"}})
	r.decode(t, &res)
	if r.status != 200 || res.Updated != 3 || res.Failed["999999"] != "not found" {
		t.Fatalf("bulk = %d %+v", r.status, res)
	}
	closed, _ := e.db.ListAlerts(ctx, state.AlertFilter{Status: vigil.AlertClosed})
	if len(closed) != 3 || closed[0].Assignee != "bob" || closed[0].CloseReason != "benign" {
		t.Errorf("closed alerts %+v", closed)
	}
	if open, _ := e.db.ListAlerts(ctx, state.AlertFilter{Status: vigil.AlertOpen}); len(open) != 2 {
		t.Errorf("%d alerts still open, want 2", len(open))
	}
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "alert.update"})
	if len(log) != 3 {
		t.Errorf("bulk update audited %d times, want once per alert (3)", len(log))
	}
}

func TestRulesEndpoints(t *testing.T) {
	cs, mod := withConsole(t)
	e := newEnv(t, mod)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cs.addEvents(t, procEvent("m1", "h1", at, "curl http://x | sh"), procEvent("m2", "h1", at, "ls -l"))
	var list struct{ Rules []RuleView }
	e.do("GET", "/api/v1/rules", e.tokens[state.RoleViewer], nil).decode(t, &list)
	if len(list.Rules) != 1 || !list.Rules[0].HasSource || !list.Rules[0].CanToggle {
		t.Fatalf("rules %+v", list)
	}
	id := list.Rules[0].ID
	var src map[string]string
	e.do("GET", "/api/v1/rules/"+id+"/source", e.tokens[state.RoleViewer], nil).decode(t, &src)
	if src["yaml"] != testRuleYAML {
		t.Errorf("source %q", src["yaml"])
	}
	if r := e.do("GET", "/api/v1/rules/nope/source", e.tokens[state.RoleViewer], nil); r.status != 404 {
		t.Errorf("unknown rule source = %d", r.status)
	}
	if r := e.do("PUT", "/api/v1/rules/nope/enabled", e.tokens[state.RoleAdmin], RuleEnable{}); r.status != 404 {
		t.Errorf("unknown rule toggle = %d", r.status)
	}
	if r := e.do("PUT", "/api/v1/rules/"+id+"/enabled", e.tokens[state.RoleAdmin], RuleEnable{Enabled: false}); r.status != 204 || cs.toggles() != fmt.Sprintf("map[%s:false]", id) {
		t.Errorf("disable = %d, toggles %s", r.status, cs.toggles())
	}

	// Testing the rule finds the matching event only, with the SQL it ran.
	var res RuleTestResult
	r := e.do("POST", "/api/v1/rules/test", e.tokens[state.RoleOperator], RuleTest{YAML: testRuleYAML})
	r.decode(t, &res)
	if r.status != 200 || res.Table != "process_creation" || len(res.Rows) != 1 || !strings.Contains(res.SQL, "process_creation") {
		t.Fatalf("rule test = %d %+v", r.status, res)
	}
	col := -1
	for i, c := range res.Columns {
		if c == "event_id" {
			col = i
		}
	}
	if col < 0 || res.Rows[0][col] != "m1" {
		t.Errorf("rule test rows %v (columns %v)", res.Rows, res.Columns)
	}
	for _, bad := range []RuleTest{{YAML: "title: [unclosed"}, {YAML: "title: x\nlogsource: {category: nope}\ndetection: {s: {a: b}, condition: s}\n"}, {YAML: testRuleYAML, Limit: 5000}} {
		if r := e.do("POST", "/api/v1/rules/test", e.tokens[state.RoleOperator], bad); r.status != 400 || r.errorMsg() == "" {
			t.Errorf("rule test %q = %d %s, want 400", bad.YAML, r.status, r.body)
		}
	}
	// A server without the hooks answers 501, not a crash.
	bare := newEnv(t, nil)
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/rules"}, {"GET", "/api/v1/rules/x/source"}} {
		if r := bare.do(c.method, c.path, bare.tokens[state.RoleAdmin], nil); r.status != 501 {
			t.Errorf("%s %s without hooks = %d", c.method, c.path, r.status)
		}
	}
	if r := bare.do("PUT", "/api/v1/rules/x/enabled", bare.tokens[state.RoleAdmin], RuleEnable{}); r.status != 501 {
		t.Errorf("toggle without hook = %d", r.status)
	}
}

func TestSchemaEndpoint(t *testing.T) {
	_, mod := withConsole(t)
	e := newEnv(t, mod)
	var s struct{ Live, Events []TableSchema }
	e.do("GET", "/api/v1/schema", e.tokens[state.RoleViewer], nil).decode(t, &s)
	if len(s.Live) != 1 || s.Live[0].Name != "processes" || len(s.Live[0].Columns) != 2 {
		t.Errorf("live tables %+v", s.Live)
	}
	names := map[string]bool{}
	for _, t := range s.Events {
		names[t.Name] = len(t.Columns) > 6
	}
	for _, n := range []string{"process_creation", "network_connection", "file_event", "authentication"} {
		if !names[n] {
			t.Errorf("event table %s missing or without its columns: %v", n, names)
		}
	}
}

func TestConsoleAssets(t *testing.T) {
	e := newEnv(t, nil)
	get := func(method, path string) (*http.Response, string) {
		req, _ := http.NewRequest(method, e.people.URL+path, nil)
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, body := get("GET", "/")
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.Contains(body, `<script type="module" src="app.js">`) ||
		!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("GET / = %d CSP %q body %.200s", res.StatusCode, csp, body)
	}
	// No inline script, style or handler: the CSP would block them.
	for _, bad := range []string{"<script>", " onclick=", " style=", "<style"} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	// Every module the console embeds.
	mods, _ := fs.Glob(consoleFS, "console/*.js")
	if len(mods) < 9 {
		t.Errorf("console modules %v: want app, lib and a module per page", mods)
	}
	for _, f := range mods {
		f = path.Base(f)
		res, body := get("GET", "/"+f)
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET /%s = %d %s", f, res.StatusCode, res.Header.Get("Content-Type"))
		}
		// No module reaches another origin or evaluates strings.
		for _, bad := range []string{"http://", "https://", "eval(", "new Function", ".innerHTML", "document.write"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
	}
	if res, _ := get("GET", "/style.css"); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, _ := get("GET", "/nope.js"); res.StatusCode != 404 {
		t.Errorf("unknown asset = %d", res.StatusCode)
	}
	if res, _ := get("POST", "/"); res.StatusCode != 405 {
		t.Errorf("POST / = %d", res.StatusCode)
	}
	// The API's own 404 is still JSON.
	if r := e.do("GET", "/api/v2/x", e.tokens[state.RoleViewer], nil); r.status != 404 || r.errorMsg() == "" {
		t.Errorf("unknown API path = %d %s", r.status, r.body)
	}
	// NoConsole leaves the pages out.
	bare := newEnv(t, func(_ *control.Options, o *Options) { o.NoConsole = true })
	req, _ := http.NewRequest("GET", bare.people.URL+"/", nil)
	if res, err := bare.client.Do(req); err != nil || res.StatusCode != 404 {
		t.Errorf("NoConsole GET / = %v %v", res, err)
	} else {
		res.Body.Close()
	}
}
