package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/state"
)

// writeRoute is one POST/PUT/PATCH route of the people API with a request
// that changes something (good) and one with a field of the wrong type.
type writeRoute struct {
	path      string
	good      any    // marshalled; accepted with a 2xx and changes state
	wrongType string // a body with field of the wrong type (or, for an action that takes no body, an unknown one)
	field     string // the field the error must name
}

// TestBadBodiesChangeNothing sends every POST/PUT/PATCH route, as admin,
// a body that is not JSON, one over the 1 MiB limit and one with a field
// of the wrong type. Each must answer 400 with a JSON error that names the
// problem and change nothing; then the well-formed request must change
// something, which shows the before/after comparison can see a change.
func TestBadBodiesChangeNothing(t *testing.T) {
	cs, console := withConsole(t)
	soc := &fakeOutput{name: "soc"}
	outputs := newDispatcher(t, soc)
	// A fixed clock: token last-use times do not move between snapshots.
	// Fixed at the real time, not a date: the state checks suppression
	// expiries against its own clock, so a past date fails once passed.
	now := time.Now().UTC().Truncate(time.Second)
	e := newEnv(t, func(co *control.Options, o *Options) {
		console(co, o)
		o.Outputs = outputs
		o.Now = func() time.Time { return now }
	})
	ctx := context.Background()
	admin := e.tokens[state.RoleAdmin]
	host := e.enroll("web-01", false)
	if _, _, _, err := e.db.CommitMatches(ctx, "r", "process_creation", 1,
		[]vigil.Alert{{RuleID: "r", HostID: host.host.ID, Hostname: "web-01", EventID: "e1"}}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	var alerts struct {
		Alerts []struct {
			ID int64 `json:"id"`
		} `json:"alerts"`
	}
	e.do("GET", "/api/v1/alerts", admin, nil).decode(t, &alerts)
	if len(alerts.Alerts) != 1 {
		t.Fatalf("seeded alerts: %+v", alerts)
	}
	alertID := alerts.Alerts[0].ID
	payload, _ := json.Marshal([]vigil.Alert{{RuleID: "r", EventID: "e1", HostID: host.host.ID}})
	deadLetter, err := e.db.AddDeadLetter(ctx, state.DeadLetter{Output: "soc", Kind: "webhook", Payload: string(payload), Error: "down"})
	if err != nil {
		t.Fatal(err)
	}

	// In an order where each good request still has something to change
	// (the dead letter is redelivered, and the host revoked, last).
	routes := []struct {
		pattern string
		writeRoute
	}{
		{"PATCH /api/v1/alerts/{id}", writeRoute{fmt.Sprint("/api/v1/alerts/", alertID),
			map[string]any{"status": "acknowledged", "assignee": "mallory"}, `{"status": 2}`, "status"}},
		{"POST /api/v1/alerts/bulk", writeRoute{"/api/v1/alerts/bulk",
			map[string]any{"ids": []int64{alertID}, "status": "closed", "close_reason": "benign"}, `{"ids": "1,2", "status": "closed"}`, "ids"}},
		{"POST /api/v1/queries", writeRoute{"/api/v1/queries",
			map[string]any{"sql": "SELECT 1", "hosts": []string{"web-01"}}, `{"sql": 1, "hosts": ["web-01"]}`, "sql"}},
		{"PUT /api/v1/config", writeRoute{"/api/v1/config",
			map[string]any{"config": map[string]any{"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1", "interval": 60}}}},
			`{"config": "schedule"}`, "config"}},
		{"PUT /api/v1/hosts/{id}/labels", writeRoute{"/api/v1/hosts/" + host.host.ID + "/labels",
			map[string]any{"labels": []string{"role:web"}}, `{"labels": "role:web"}`, "labels"}},
		{"POST /api/v1/tokens", writeRoute{"/api/v1/tokens",
			map[string]any{"user": "mallory", "role": "admin"}, `{"user": 7, "role": "admin"}`, "user"}},
		{"POST /api/v1/enroll-secrets", writeRoute{"/api/v1/enroll-secrets",
			map[string]any{"name": "extra"}, `{"name": ["extra"]}`, "name"}},
		{"POST /api/v1/events/query", writeRoute{"/api/v1/events/query",
			map[string]any{"sql": "SELECT 1"}, `{"sql": true}`, "sql"}},
		{"PUT /api/v1/rules/{id}/enabled", writeRoute{"/api/v1/rules/11111111-2222-3333-4444-555555555555/enabled",
			map[string]any{"enabled": false}, `{"enabled": "no"}`, "enabled"}},
		{"POST /api/v1/rules/test", writeRoute{"/api/v1/rules/test",
			map[string]any{"yaml": testRuleYAML}, `{"yaml": 1}`, "yaml"}},
		{"POST /api/v1/suppressions", writeRoute{"/api/v1/suppressions",
			map[string]any{"rule_id": "11111111-2222-3333-4444-555555555555", "reason": "noisy", "expires_in": "1h"}, `{"rule_id": 5, "reason": "noisy"}`, "rule_id"}},
		// Actions that take no body: none or {} is accepted, anything
		// else refused (a client sending parameters expects them used).
		{"POST /api/v1/outputs/{name}/test", writeRoute{"/api/v1/outputs/soc/test",
			map[string]any{}, `{"output": 1}`, "output"}},
		{"POST /api/v1/dead-letters/{id}/redeliver", writeRoute{fmt.Sprint("/api/v1/dead-letters/", deadLetter, "/redeliver"),
			map[string]any{}, `{"force": true}`, "force"}},
		{"POST /api/v1/hosts/{id}/revoke", writeRoute{"/api/v1/hosts/" + host.host.ID + "/revoke",
			map[string]any{}, `{"keys": 1}`, "keys"}},
	}

	// Every write route has a case: a new route fails here until it has.
	covered := map[string]bool{}
	for _, r := range routes {
		covered[r.pattern] = true
	}
	for _, p := range e.api.patterns {
		method, _, _ := strings.Cut(p, " ")
		if (method == "POST" || method == "PUT" || method == "PATCH") && !covered[p] {
			t.Errorf("route %s has no bad-input case in TestBadBodiesChangeNothing", p)
		}
	}

	// snapshot is what the routes can change: the audit log, what the
	// list endpoints show, and what the fakes were asked to do.
	snapshot := func() string {
		t.Helper()
		var b strings.Builder
		audit, err := e.db.AuditLog(ctx, state.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range audit {
			fmt.Fprintf(&b, "audit %d %s %s %s\n", a.ID, a.Actor, a.Action, a.Target)
		}
		for _, p := range []string{"/api/v1/alerts", "/api/v1/config/versions", "/api/v1/hosts/" + host.host.ID + "/config",
			"/api/v1/tokens", "/api/v1/enroll-secrets", "/api/v1/suppressions?expired=1", "/api/v1/dead-letters"} {
			r := e.do("GET", p, admin, nil)
			if r.status != 200 {
				t.Fatalf("GET %s: %d %s", p, r.status, r.body)
			}
			fmt.Fprintf(&b, "%s %s\n", p, r.body)
		}
		// Live queries: their ids only (a campaign's status moves on by
		// itself as it times out).
		var qs struct {
			Queries []struct {
				ID string `json:"id"`
			} `json:"queries"`
		}
		e.do("GET", "/api/v1/queries", admin, nil).decode(t, &qs)
		fmt.Fprintf(&b, "queries %v\n", qs.Queries)
		_, keyErr := e.db.HostByNodeKey(ctx, host.key)
		fmt.Fprintf(&b, "rule toggles %s, sent %d, node key valid %v\n", cs.toggles(), soc.sent(), keyErr == nil)
		return b.String()
	}

	before := snapshot()
	if again := snapshot(); again != before {
		t.Fatalf("the snapshot changes by itself:\n%s", diffLines(before, again))
	}
	for _, r := range routes {
		method, _, _ := strings.Cut(r.pattern, " ")
		good, _ := json.Marshal(r.good)
		bad := []struct {
			name, body, want string
		}{
			// The good request with a trailing comma.
			{"malformed", string(good[:len(good)-1]) + ",}", "invalid JSON at offset"},
			// The good request padded with whitespace past the limit:
			// valid JSON, refused for its size alone.
			{"oversized", "{" + strings.Repeat(" ", maxRequestBytes) + string(good[1:]), fmt.Sprintf("body exceeds %d bytes", maxRequestBytes)},
			{"wrong type", r.wrongType, wrongTypeWant(r.writeRoute)},
		}
		for _, c := range bad {
			res := e.raw(method, r.path, admin, []byte(c.body))
			var eb errorBody
			if res.status != http.StatusBadRequest || json.Unmarshal(res.body, &eb) != nil || !strings.Contains(eb.Error, c.want) {
				t.Errorf("%s %s: %d %.300s, want 400 with a JSON error mentioning %q", r.pattern, c.name, res.status, res.body, c.want)
			}
			if after := snapshot(); after != before {
				t.Errorf("%s %s changed state:\n%s", r.pattern, c.name, diffLines(before, after))
				before = after
			}
		}
		// The well-formed request goes through and is seen to change
		// something.
		res := e.raw(method, r.path, admin, good)
		if res.status/100 != 2 {
			t.Errorf("%s with %s: %d %s, want it accepted", r.pattern, good, res.status, res.body)
		}
		after := snapshot()
		if after == before {
			t.Errorf("%s with %s changed nothing the snapshot shows: the checks above are blind for this route", r.pattern, good)
		}
		before = after
	}
}

// wrongTypeWant is what the error for a route's wrongType body must say:
// the field and that its type is wrong, or for an action that takes no
// body, that the field is unknown.
func wrongTypeWant(r writeRoute) string {
	if m, ok := r.good.(map[string]any); ok && len(m) == 0 {
		return fmt.Sprintf("unknown field %q", r.field)
	}
	return fmt.Sprintf("field %s: got ", r.field)
}

// raw sends body as is.
func (e *env) raw(method, path, token string, body []byte) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.people.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// diffLines shows the lines of a and b that the other lacks.
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if !inb[l] {
			fmt.Fprintf(&out, "-%s\n", l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ina[l] {
			fmt.Fprintf(&out, "+%s\n", l)
		}
	}
	return out.String()
}
