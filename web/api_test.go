package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func TestAuthorizationMatrix(t *testing.T) {
	console, mod := withConsole(t)
	soc := &fakeOutput{name: "soc"}
	outs := newDispatcher(t, soc)
	e := newEnv(t, func(c *control.Options, o *Options) { mod(c, o); o.Outputs = outs })
	ctx := context.Background()
	online := e.enroll("web-01", false)
	stale, _, err := e.db.EnrollHost(ctx, vigil.Host{Identifier: "old", Hostname: "old", LastSeen: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A finished campaign (its only host is offline) for the read endpoints.
	done, err := e.ctl.StartCampaign(ctx, "setup", "SELECT 1", controlTarget(stale.ID))
	if err != nil || !done.Done {
		t.Fatalf("setup campaign: %+v %v", done, err)
	}
	spare, _ := e.db.CreateToken(ctx, "spare", "viewer")
	_ = spare
	toks, _ := e.db.Tokens(ctx)
	spareID := toks[len(toks)-1].ID
	removable, _, _ := e.db.EnrollHost(ctx, vigil.Host{Identifier: "gone", Hostname: "gone"})
	carve, _, err := e.db.BeginCarve(ctx, state.Carve{HostID: online.host.ID, CarveID: "c", BlockCount: 1, BlockSize: 5, CarveSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.PutCarveBlock(ctx, carve.ID, 0, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	e.db.CommitAlerts(ctx, "r", "process_creation", 1, []vigil.Alert{{RuleID: "r", EventID: "e1", HostID: online.host.ID}})
	alerts, _ := e.db.ListAlerts(ctx, state.AlertFilter{})
	fc := control.FleetConfig{Packs: map[string]control.Pack{"p": {Queries: map[string]osquery.ScheduledQuery{"q": {Query: "SELECT 1", Interval: 60}}}}}
	if _, err := e.ctl.PutFleetConfig(ctx, "setup", fc, -1, ""); err != nil {
		t.Fatal(err)
	}

	// A dead letter of the fake output, for the redelivery (admin, once).
	payload, _ := json.Marshal(alerts[:1])
	dlID, err := e.db.AddDeadLetter(ctx, state.DeadLetter{Output: "soc", Kind: "webhook", Payload: string(payload), Error: "down", Attempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Each allowed expiry needs an active suppression of its own.
	freshSuppression := func() string {
		s, err := e.db.AddSuppression(ctx, state.Suppression{RuleID: "r", Reason: "matrix", ExpiresAt: time.Now().Add(time.Hour)}, "setup", "")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint("/api/v1/suppressions/", s.ID)
	}

	type endpoint struct {
		method, path string
		body         any
		need         state.Role
		ok           int
		fresh        func() string // a path made for each call, when one call uses it up
	}
	endpoints := []endpoint{
		{"GET", "/api/v1/whoami", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/hosts", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/alerts?status=open&limit=10", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/queries", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/queries/" + done.ID, nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/queries/" + done.ID + "/stream", nil, state.RoleViewer, 200, nil},
		{"POST", "/api/v1/queries", QueryRequest{SQL: "SELECT 1", Hosts: []string{"web-01"}}, state.RoleOperator, 201, nil},
		{"PATCH", fmt.Sprint("/api/v1/alerts/", alerts[0].ID), AlertUpdate{Status: vigil.AlertAcknowledged}, state.RoleOperator, 204, nil},
		{"GET", "/api/v1/carves", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/carves/" + carve.ID + "/data", nil, state.RoleOperator, 200, nil},
		{"GET", "/api/v1/config", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/config/versions", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/config/versions/1", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/hosts/" + online.host.ID + "/config", nil, state.RoleViewer, 200, nil},
		{"PUT", "/api/v1/config", ConfigUpdate{Config: fc}, state.RoleAdmin, 200, nil},
		{"PUT", "/api/v1/hosts/" + online.host.ID + "/labels", LabelsRequest{Labels: []string{"role:web"}}, state.RoleAdmin, 200, nil},
		{"GET", "/api/v1/tokens", nil, state.RoleAdmin, 200, nil},
		{"POST", "/api/v1/tokens", TokenRequest{User: "carol", Role: "viewer"}, state.RoleAdmin, 201, nil},
		{"DELETE", fmt.Sprint("/api/v1/tokens/", spareID), nil, state.RoleAdmin, 204, nil},
		{"GET", "/api/v1/enroll-secrets", nil, state.RoleAdmin, 200, nil},
		{"POST", "/api/v1/enroll-secrets", EnrollSecretRequest{Name: "q1"}, state.RoleAdmin, 201, nil},
		{"DELETE", "/api/v1/enroll-secrets/q1", nil, state.RoleAdmin, 204, nil},
		{"GET", "/api/v1/audit", nil, state.RoleAdmin, 200, nil},
		{"POST", "/api/v1/hosts/" + online.host.ID + "/revoke", nil, state.RoleAdmin, 200, nil},
		{"DELETE", "/api/v1/hosts/" + removable.ID, nil, state.RoleAdmin, 204, nil},

		// The console's endpoints.
		{"GET", "/api/v1/schema", nil, state.RoleViewer, 200, nil},
		{"POST", "/api/v1/alerts/bulk", BulkAlertUpdate{IDs: []int64{alerts[0].ID}, AlertUpdate: AlertUpdate{Status: vigil.AlertClosed, Reason: "matrix"}}, state.RoleOperator, 200, nil},
		{"POST", "/api/v1/events/query", EventQuery{SQL: "SELECT count(*) AS n FROM process_creation"}, state.RoleOperator, 200, nil},
		{"GET", "/api/v1/hosts/" + online.host.ID + "/timeline", nil, state.RoleOperator, 200, nil},
		{"GET", "/api/v1/hosts/" + online.host.ID + "/health", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/rules", nil, state.RoleViewer, 200, nil},
		{"GET", "/api/v1/rules/11111111-2222-3333-4444-555555555555/source", nil, state.RoleViewer, 200, nil},
		{"PUT", "/api/v1/rules/11111111-2222-3333-4444-555555555555/enabled", RuleEnable{Enabled: false}, state.RoleAdmin, 204, nil},
		{"POST", "/api/v1/rules/test", RuleTest{YAML: testRuleYAML}, state.RoleOperator, 200, nil},

		// Suppressions, outputs and dead letters.
		{"GET", "/api/v1/suppressions?expired=1", nil, state.RoleViewer, 200, nil},
		{"POST", "/api/v1/suppressions", SuppressionRequest{RuleID: "11111111-2222-3333-4444-555555555555", Host: online.host.ID,
			Reason: "matrix", ExpiresIn: "1h"}, state.RoleOperator, 201, nil},
		{"DELETE", "/api/v1/suppressions/1", nil, state.RoleOperator, 204, freshSuppression},
		{"GET", "/api/v1/outputs", nil, state.RoleViewer, 200, nil},
		{"POST", "/api/v1/outputs/soc/test", nil, state.RoleAdmin, 200, nil},
		{"GET", "/api/v1/dead-letters", nil, state.RoleAdmin, 200, nil},
		{"POST", fmt.Sprint("/api/v1/dead-letters/", dlID, "/redeliver"), nil, state.RoleAdmin, 200, nil},
	}
	// Every authenticated route is in the matrix.
	for _, pat := range e.api.patterns {
		method, path, _ := strings.Cut(pat, " ")
		re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), "[^/]+") + "$")
		covered := false
		for _, ep := range endpoints {
			p, _, _ := strings.Cut(ep.path, "?")
			if ep.method == method && re.MatchString(p) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("route %q is not in the authorization matrix", pat)
		}
	}
	// counts of things the endpoints create, to check denials change nothing
	snapshot := func() string {
		cs, _ := e.db.ListCampaigns(ctx, 1000)
		ts, _ := e.db.Tokens(ctx)
		ss, _ := e.db.EnrollSecrets(ctx)
		hs, _ := e.db.Hosts(ctx)
		revoked := 0
		for _, tk := range ts {
			if !tk.RevokedAt.IsZero() {
				revoked++
			}
		}
		_, err := e.db.HostByNodeKey(ctx, online.key)
		vs, _ := e.db.ConfigVersions(ctx, 100)
		ls, _ := e.db.HostLabels(ctx, online.host.ID)
		as, _ := e.db.ListAlerts(ctx, state.AlertFilter{Status: vigil.AlertOpen})
		ls = append(ls, fmt.Sprint("open_alerts=", len(as)))
		active, _ := e.db.Suppressions(ctx, false)
		sups, _ := e.db.Suppressions(ctx, true)
		dls, _ := e.db.DeadLetters(ctx, 100)
		ls = append(ls, fmt.Sprintf("suppressions=%d/%d dead_letters=%d sent=%d", len(active), len(sups), len(dls), soc.sent()))
		return fmt.Sprintf("campaigns=%d tokens=%d revoked=%d secrets=%d hosts=%d key_ok=%v configs=%d labels=%v rules=%s",
			len(cs), len(ts), revoked, len(ss), len(hs), err == nil, len(vs), ls, console.toggles())
	}

	callers := []struct {
		name  string
		token string
		role  state.Role
	}{
		{"no token", "", ""},
		{"bad token", "vgl_not-a-real-token", ""},
		{"viewer", e.tokens[state.RoleViewer], state.RoleViewer},
		{"operator", e.tokens[state.RoleOperator], state.RoleOperator},
		{"admin", e.tokens[state.RoleAdmin], state.RoleAdmin},
	}
	for _, c := range callers {
		for _, ep := range endpoints {
			path := ep.path
			if ep.fresh != nil {
				path = ep.fresh()
			}
			before := snapshot()
			r := e.do(ep.method, path, c.token, ep.body)
			name := fmt.Sprintf("%s: %s %s", c.name, ep.method, path)
			switch {
			case c.role == "":
				if r.status != http.StatusUnauthorized || r.errorMsg() == "" || r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s = %d %s, want 401 with an error", name, r.status, r.body)
				}
			case !c.role.Allows(ep.need):
				if r.status != http.StatusForbidden || !strings.Contains(r.errorMsg(), string(ep.need)) {
					t.Errorf("%s = %d %s, want 403 naming role %s", name, r.status, r.body, ep.need)
				}
			default:
				if r.status != ep.ok {
					t.Errorf("%s = %d %s, want %d", name, r.status, r.body, ep.ok)
				}
				continue
			}
			if after := snapshot(); after != before && ep.method != "GET" {
				t.Errorf("%s was denied but changed state: %s -> %s", name, before, after)
			}
		}
	}
	// The allowed suppression, output and dead-letter actions were audited
	// (a denied one never is: the snapshots above did not change).
	for action, want := range map[string]int{"suppression.create": 2, "suppression.expire": 2, "output.test": 1, "dead_letter.redeliver": 1} {
		log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: action})
		users := 0
		for _, l := range log {
			if strings.HasSuffix(l.Actor, "-user") {
				users++
			}
		}
		if users != want {
			t.Errorf("%s audited %d times for people, want %d: %+v", action, users, want, log)
		}
	}
	if dls, _ := e.db.DeadLetters(ctx, 10); len(dls) != 0 {
		t.Errorf("redelivered dead letter kept: %+v", dls)
	}
	// The carve downloads were audited; the bytes are the file.
	if r := e.do("GET", "/api/v1/carves/"+carve.ID+"/data", e.tokens[state.RoleOperator], nil); string(r.body) != "hello" {
		t.Errorf("carve data %q", r.body)
	}
	if log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "carve.download"}); len(log) != 3 {
		t.Errorf("carve downloads audited %d times, want 3 (operator, admin, check)", len(log))
	}
	// Bad tokens were audited.
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "auth.bad_token"})
	if len(log) == 0 || log[0].Actor != "anonymous" || log[0].Source == "" {
		t.Errorf("bad-token audit %+v", log)
	}
}

func TestWhoamiAndErrors(t *testing.T) {
	e := newEnv(t, nil)
	var who map[string]string
	e.do("GET", "/api/v1/whoami", e.tokens[state.RoleOperator], nil).decode(t, &who)
	if who["user"] != "operator-user" || who["role"] != "operator" {
		t.Errorf("whoami %v", who)
	}
	// The scheme is case-insensitive (RFC 7235).
	req, _ := http.NewRequest("GET", e.people.URL+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "bearer "+e.tokens[state.RoleViewer])
	if res, err := e.client.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("lower-case bearer: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	// Another scheme is not a token.
	req, _ = http.NewRequest("GET", e.people.URL+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Basic "+e.tokens[state.RoleViewer])
	if res, err := e.client.Do(req); err != nil || res.StatusCode != 401 {
		t.Errorf("basic auth: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	tok := e.tokens[state.RoleViewer]
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/queries/nope", 404},
		{"/api/v1/queries/nope/stream", 404},
		{"/api/v1/alerts?status=weird", 400},
		{"/api/v1/alerts?limit=0", 400},
		{"/api/v1/alerts?limit=abc", 400},
		{"/api/v1/nothing-here", 404},
	} {
		r := e.do("GET", c.path, tok, nil)
		if r.status != c.want || r.errorMsg() == "" {
			t.Errorf("GET %s = %d %s, want %d with a JSON error", c.path, r.status, r.body, c.want)
		}
	}
}

func TestStartQueryValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.enroll("web-01", false)
	tok := e.tokens[state.RoleOperator]
	for _, c := range []struct {
		body any
		want string
	}{
		{QueryRequest{SQL: "", All: true}, "sql is empty"},
		{QueryRequest{SQL: "SELECT 1"}, "no target"},
		{QueryRequest{SQL: "SELECT 1", Hosts: []string{"ghost"}}, "ghost"},
		{QueryRequest{SQL: "SELECT 1", Hosts: []string{"web-01"}, All: true}, "not both"},
		{map[string]any{"sql": "SELECT 1", "host": []string{"web-01"}}, "unknown field"},
		{map[string]any{"sql": 1}, "invalid JSON at offset"},
	} {
		r := e.do("POST", "/api/v1/queries", tok, c.body)
		if r.status != 400 || !strings.Contains(r.errorMsg(), c.want) {
			t.Errorf("POST %+v = %d %s, want 400 mentioning %q", c.body, r.status, r.body, c.want)
		}
	}
	if cs, _ := e.db.ListCampaigns(context.Background(), 10); len(cs) != 0 {
		t.Errorf("invalid requests created campaigns: %+v", cs)
	}
}

func TestHostsOnline(t *testing.T) {
	e := newEnv(t, nil)
	a := e.enroll("web-01", true)
	e.db.EnrollHost(context.Background(), vigil.Host{Identifier: "old", Hostname: "old", LastSeen: time.Now().Add(-time.Hour)})
	var out struct {
		Hosts []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
			Online   bool   `json:"online"`
			LongPoll bool   `json:"long_poll"`
		} `json:"hosts"`
	}
	r := e.do("GET", "/api/v1/hosts", e.tokens[state.RoleViewer], nil)
	r.decode(t, &out)
	if len(out.Hosts) != 2 {
		t.Fatalf("hosts %s", r.body)
	}
	for _, h := range out.Hosts {
		switch h.Hostname {
		case "web-01":
			if !h.Online || h.ID != a.host.ID || !h.LongPoll {
				t.Errorf("web-01 %+v", h)
			}
		case "old":
			if h.Online {
				t.Errorf("old host online: %+v", h)
			}
		}
	}
	if strings.Contains(string(r.body), "node_key") || strings.Contains(string(r.body), a.key) {
		t.Error("hosts response leaks node keys")
	}
}

func TestAlertsEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	var alerts []vigil.Alert
	for i := range 5 {
		alerts = append(alerts, vigil.Alert{RuleID: "r1", RuleTitle: "Suspicious", Level: vigil.LevelHigh, HostID: "h1", Hostname: "web-01",
			EventID: fmt.Sprint("e", i), EventTable: "process_creation", CreatedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	alerts = append(alerts, vigil.Alert{RuleID: "r2", HostID: "h2", Hostname: "db-01", EventID: "x", CreatedAt: base.Add(time.Hour)})
	if _, err := e.db.CommitAlerts(ctx, "r1", "process_creation", 1, alerts); err != nil {
		t.Fatal(err)
	}
	get := func(q string) []vigil.Alert {
		var out struct {
			Alerts []vigil.Alert `json:"alerts"`
		}
		r := e.do("GET", "/api/v1/alerts"+q, e.tokens[state.RoleViewer], nil)
		if r.status != 200 {
			t.Fatalf("GET alerts%s: %d %s", q, r.status, r.body)
		}
		r.decode(t, &out)
		return out.Alerts
	}
	all := get("")
	if len(all) != 6 || all[0].RuleID != "r2" || all[1].EventID != "e4" {
		t.Errorf("newest first: %+v", all)
	}
	if got := get("?rule=r1&limit=2"); len(got) != 2 || got[0].EventID != "e4" {
		t.Errorf("rule+limit: %+v", got)
	}
	if got := get("?host=db-01"); len(got) != 1 || got[0].HostID != "h2" {
		t.Errorf("host: %+v", got)
	}
	if got := get("?status=closed"); len(got) != 0 {
		t.Errorf("closed: %+v", got)
	}
}

func TestBadTokenRateLimit(t *testing.T) {
	e := newEnv(t, func(_ *controlOptions, o *Options) { o.BadAuthLimit = 3; o.BadAuthWindow = time.Hour })
	for i := range 3 {
		if r := e.do("GET", "/api/v1/whoami", fmt.Sprint("bad", i), nil); r.status != 401 {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	// Now even a good token from this address waits out the window.
	r := e.do("GET", "/api/v1/whoami", e.tokens[state.RoleAdmin], nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("after the limit: %d %s", r.status, r.body)
	}
	log, _ := e.db.AuditLog(context.Background(), state.AuditFilter{Action: "auth.bad_token"})
	if len(log) != 2 { // the first failure and the one that tripped the limit
		t.Errorf("audited %d bad-token entries, want 2: %+v", len(log), log)
	}
}

func TestAuditExport(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for i := range 5 {
		e.db.Audit(ctx, state.AuditEntry{Actor: "alice", Action: "query.start", Target: fmt.Sprint(i)})
	}
	admin := e.tokens[state.RoleAdmin]
	var page struct {
		Entries   []state.AuditEntry `json:"entries"`
		NextAfter int64              `json:"next_after"`
	}
	e.do("GET", "/api/v1/audit?limit=3", admin, nil).decode(t, &page)
	if len(page.Entries) != 3 || page.Entries[0].Target != "0" {
		t.Fatalf("page 1: %+v", page)
	}
	e.do("GET", fmt.Sprint("/api/v1/audit?after=", page.NextAfter), admin, nil).decode(t, &page)
	if len(page.Entries) != 2 || page.Entries[1].Target != "4" {
		t.Fatalf("page 2: %+v", page)
	}
	r := e.do("GET", "/api/v1/audit?format=ndjson", admin, nil)
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if r.status != 200 || len(lines) != 5 || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("ndjson: %d %q", r.status, r.body)
	}
	var first state.AuditEntry
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Actor != "alice" {
		t.Errorf("ndjson line: %q %v", lines[0], err)
	}
	for _, q := range []string{"?after=x", "?limit=0", "?format=xml"} {
		if r := e.do("GET", "/api/v1/audit"+q, admin, nil); r.status != 400 {
			t.Errorf("%s: %d", q, r.status)
		}
	}
}

func TestAlertLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.db.CommitAlerts(ctx, "r", "process_creation", 1, []vigil.Alert{{RuleID: "r", EventID: "e1", HostID: "h"}})
	all, _ := e.db.ListAlerts(ctx, state.AlertFilter{})
	path := fmt.Sprint("/api/v1/alerts/", all[0].ID)
	op := e.tokens[state.RoleOperator]
	if r := e.do("PATCH", path, e.tokens[state.RoleViewer], AlertUpdate{Status: vigil.AlertAcknowledged}); r.status != 403 {
		t.Errorf("viewer: %d", r.status)
	}
	if r := e.do("PATCH", path, op, AlertUpdate{Status: vigil.AlertAcknowledged, Assignee: "operator-user"}); r.status != 204 {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", path, op, AlertUpdate{Status: vigil.AlertClosed}); r.status != 400 {
		t.Errorf("close without reason: %d", r.status)
	}
	if r := e.do("PATCH", path, op, AlertUpdate{Status: vigil.AlertClosed, Reason: "admin activity"}); r.status != 204 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	if r := e.do("PATCH", path, op, AlertUpdate{Status: "gone"}); r.status != 400 {
		t.Errorf("bad status: %d", r.status)
	}
	if r := e.do("PATCH", "/api/v1/alerts/999", op, AlertUpdate{Status: vigil.AlertOpen}); r.status != 404 {
		t.Errorf("unknown alert: %d", r.status)
	}
	got, _ := e.db.ListAlerts(ctx, state.AlertFilter{Status: vigil.AlertClosed})
	if len(got) != 1 || got[0].CloseReason != "admin activity" {
		t.Errorf("closed alerts %+v", got)
	}
	if log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "alert.update"}); len(log) != 2 {
		t.Errorf("audited %d alert updates, want 2", len(log))
	}
}
