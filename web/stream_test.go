package web

import (
	"context"
	"encoding/json"
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
