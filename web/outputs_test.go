package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/state"
)

// fakeOutput is an output.Output that records what it is sent and fails
// while down is set.
type fakeOutput struct {
	name string
	mu   sync.Mutex
	down error
	got  []vigil.Alert
}

func (f *fakeOutput) Name() string { return f.name }
func (f *fakeOutput) Kind() string { return "webhook" }
func (f *fakeOutput) Send(_ context.Context, alerts []vigil.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return f.down
	}
	f.got = append(f.got, alerts...)
	return nil
}

func (f *fakeOutput) sent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func (f *fakeOutput) setDown(err error) {
	f.mu.Lock()
	f.down = err
	f.mu.Unlock()
}

// newDispatcher is the real dispatcher over fake outputs (not running:
// the API's calls send directly).
func newDispatcher(t *testing.T, outs ...output.Output) *output.Dispatcher {
	t.Helper()
	d, err := output.New(output.Options{Outputs: outs, Retry: output.Retry{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOutputsEndpoints(t *testing.T) {
	soc := &fakeOutput{name: "soc"}
	chat := &fakeOutput{name: "chat", down: errors.New("POST https://hooks.example/x: 503 Service Unavailable")}
	d := newDispatcher(t, soc, chat)
	e := newEnv(t, func(_ *control.Options, o *Options) { o.Outputs = d })
	ctx := context.Background()
	admin := e.tokens[state.RoleAdmin]

	var list OutputsList
	e.do("GET", "/api/v1/outputs", e.tokens[state.RoleViewer], nil).decode(t, &list)
	if !list.Configured || len(list.Outputs) != 2 || list.Outputs[0].Name != "soc" || list.Outputs[1].Kind != "webhook" {
		t.Fatalf("outputs %+v", list)
	}

	// A test send that works, one that fails (502 with the output's
	// error), one to an output that does not exist.
	var ok OutputResult
	if r := e.do("POST", "/api/v1/outputs/soc/test", admin, nil); r.status != 200 {
		t.Fatalf("test send: %d %s", r.status, r.body)
	} else if r.decode(t, &ok); !ok.OK || ok.Output != "soc" {
		t.Errorf("test send answer %s", r.body)
	}
	if soc.sent() != 1 || soc.got[0].RuleID != "vigil-test" {
		t.Errorf("soc got %+v, want the test alert", soc.got)
	}
	r := e.do("POST", "/api/v1/outputs/chat/test", admin, nil)
	if r.status != http.StatusBadGateway || !strings.Contains(r.errorMsg(), "503 Service Unavailable") || !strings.Contains(r.errorMsg(), `"chat"`) {
		t.Errorf("failing test send: %d %s, want 502 with the output's error", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/outputs/nope/test", admin, nil); r.status != 404 || !strings.Contains(r.errorMsg(), "nope") {
		t.Errorf("unknown output: %d %s", r.status, r.body)
	}
	e.do("GET", "/api/v1/outputs", admin, nil).decode(t, &list)
	if s := list.Outputs[1]; s.Attempts != 0 {
		// A test send is not a delivery: it leaves the counters alone.
		t.Errorf("chat stats after a test send %+v", s)
	}
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "output.test"})
	if len(log) != 2 || log[0].Target != "soc" || log[0].Detail["ok"] != true || log[1].Detail["ok"] != false ||
		!strings.Contains(fmt.Sprint(log[1].Detail["error"]), "503") || log[0].Actor != "admin-user" {
		t.Errorf("test sends audited as %+v", log)
	}

	// Dead letters: listed; redelivered to a down output (502, kept, no
	// copy), then to a working one (200, deleted).
	payload, _ := json.Marshal([]vigil.Alert{{RuleID: "r", EventID: "e1", HostID: "h"}, {RuleID: "r", EventID: "e2", HostID: "h"}})
	id, err := e.db.AddDeadLetter(ctx, state.DeadLetter{Output: "chat", Kind: "webhook", Payload: string(payload), Error: "down", Attempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	var dls DeadLettersList
	e.do("GET", "/api/v1/dead-letters", admin, nil).decode(t, &dls)
	if len(dls.DeadLetters) != 1 || dls.DeadLetters[0].ID != id || dls.DeadLetters[0].Output != "chat" || !strings.Contains(dls.DeadLetters[0].Payload, "e2") {
		t.Fatalf("dead letters %+v", dls)
	}
	path := fmt.Sprint("/api/v1/dead-letters/", id, "/redeliver")
	if r := e.do("POST", path, admin, nil); r.status != http.StatusBadGateway || !strings.Contains(r.errorMsg(), "503") {
		t.Errorf("redelivery to a down output: %d %s, want 502", r.status, r.body)
	}
	if got, _ := e.db.DeadLetters(ctx, 10); len(got) != 1 || got[0].ID != id {
		t.Errorf("after a failed redelivery: %+v, want the one dead letter kept", got)
	}
	chat.setDown(nil)
	if r := e.do("POST", path, admin, nil); r.status != 200 {
		t.Fatalf("redelivery: %d %s", r.status, r.body)
	}
	if chat.sent() != 2 {
		t.Errorf("chat got %d alerts, want the dead letter's 2", chat.sent())
	}
	if got, _ := e.db.DeadLetters(ctx, 10); len(got) != 0 {
		t.Errorf("delivered dead letter kept: %+v", got)
	}
	if r := e.do("POST", path, admin, nil); r.status != 404 {
		t.Errorf("redelivering a deleted dead letter: %d %s", r.status, r.body)
	}
	log, _ = e.db.AuditLog(ctx, state.AuditFilter{Action: "dead_letter.redeliver"})
	if len(log) != 2 || log[0].Detail["ok"] != false || log[1].Detail["ok"] != true || log[1].Target != fmt.Sprint(id) {
		t.Errorf("redeliveries audited as %+v", log)
	}

	// A dead letter of an output no longer configured, or unreadable: 409.
	for _, dl := range []state.DeadLetter{
		{Output: "removed", Kind: "slack", Payload: string(payload), Error: "x"},
		{Output: "soc", Kind: "webhook", Payload: "{truncated", Error: "x"},
	} {
		id, _ := e.db.AddDeadLetter(ctx, dl)
		r := e.do("POST", fmt.Sprint("/api/v1/dead-letters/", id, "/redeliver"), admin, nil)
		if r.status != http.StatusConflict || !strings.Contains(r.errorMsg(), fmt.Sprint("dead letter ", id)) {
			t.Errorf("redelivering %+v: %d %s, want 409 naming it", dl, r.status, r.body)
		}
	}
	for _, c := range []struct{ path, want string }{
		{"/api/v1/dead-letters/x/redeliver", "not a number"},
		{"/api/v1/dead-letters/999/redeliver", "999"},
	} {
		if r := e.do("POST", c.path, admin, nil); r.status/100 != 4 || !strings.Contains(r.errorMsg(), c.want) {
			t.Errorf("POST %s: %d %s", c.path, r.status, r.body)
		}
	}
	if r := e.do("GET", "/api/v1/dead-letters?limit=0", admin, nil); r.status != 400 {
		t.Errorf("limit=0: %d", r.status)
	}
}

func TestOutputsNotConfigured(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.tokens[state.RoleAdmin]
	var list OutputsList
	if r := e.do("GET", "/api/v1/outputs", admin, nil); r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	} else if r.decode(t, &list); list.Configured || list.Outputs == nil || len(list.Outputs) != 0 {
		t.Errorf("outputs without a dispatcher: %s", r.body)
	}
	id, _ := e.db.AddDeadLetter(context.Background(), state.DeadLetter{Output: "soc", Kind: "webhook", Payload: "[]", Error: "x"})
	for _, p := range []string{"/api/v1/outputs/soc/test", fmt.Sprint("/api/v1/dead-letters/", id, "/redeliver")} {
		if r := e.do("POST", p, admin, nil); r.status != http.StatusNotImplemented || !strings.Contains(r.errorMsg(), "--outputs") {
			t.Errorf("POST %s without outputs: %d %s, want 501 naming --outputs", p, r.status, r.body)
		}
	}
	// Dead letters of an earlier configuration are still readable.
	var dls DeadLettersList
	if e.do("GET", "/api/v1/dead-letters", admin, nil).decode(t, &dls); len(dls.DeadLetters) != 1 {
		t.Errorf("dead letters %+v", dls)
	}
}
