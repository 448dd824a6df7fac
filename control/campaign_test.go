package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func TestDistributedRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	keyA, a := e.enroll("enroll.json")
	keyB, b := e.enroll("enroll_vigil.json")

	// Nothing pending: an empty (but present) queries object.
	q, r := e.readQueries(ctx, keyA, 0)
	if r.status != 200 || q == nil || len(q) != 0 || !strings.Contains(string(r.body), `"queries":{}`) {
		t.Fatalf("empty read: %d %s", r.status, r.body)
	}

	okCamp, err := e.srv.StartCampaign(WithSource(ctx, "192.0.2.7:5555"), "alice", "SELECT * FROM osquery_info", Target{Hosts: []string{"web-01.example", b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	errCamp, err := e.srv.StartCampaign(ctx, "alice", "SELECT * FROM does_not_exist", Target{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(okCamp.Hosts) != 2 || len(errCamp.Hosts) != 2 {
		t.Fatalf("targets: %+v / %+v", okCamp.Hosts, errCamp.Hosts)
	}
	events, cancel := e.srv.Subscribe(errCamp.ID)
	defer cancel()

	q, _ = e.readQueries(ctx, keyA, 0)
	if len(q) != 2 || q[okCamp.ID] != "SELECT * FROM osquery_info" || q[errCamp.ID] != "SELECT * FROM does_not_exist" {
		t.Fatalf("host A read %v", q)
	}
	// Handed out once.
	if q, _ := e.readQueries(ctx, keyA, 0); len(q) != 0 {
		t.Errorf("second read got %v", q)
	}
	// Host A answers both, with the documented write body.
	r = e.post(osquery.PathDistributedWrite, fixture(t, "distributed_write.json", "NODE_KEY", keyA, "CAMPAIGN_OK", okCamp.ID, "CAMPAIGN_ERR", errCamp.ID))
	if r.status != 200 {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	// Host B: error for errCamp (no messages: generic error), rows for okCamp.
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyB,
		Queries:  map[string][]map[string]string{okCamp.ID: {{"version": "0.1.0-dev"}}, errCamp.ID: {}},
		Statuses: map[string]osquery.Int{okCamp.ID: 0, errCamp.ID: 1}})
	if r := e.post(osquery.PathDistributedWrite, wb); r.status != 200 {
		t.Fatalf("write B: %d %s", r.status, r.body)
	}

	// The invalid SQL campaign completes with an error per host.
	evs := collect(t, events, 5*time.Second)
	statuses := map[string]CampaignEvent{}
	var done *CampaignEvent
	for i, ev := range evs {
		switch ev.Type {
		case EventStatus:
			statuses[ev.HostID] = ev
		case EventDone:
			done = &evs[i]
		case EventResult:
			t.Errorf("result event for a failed query: %+v", ev)
		}
	}
	if statuses[a.ID].Status != "error" || statuses[a.ID].Error != "no such table: does_not_exist" || statuses[a.ID].Hostname != "web-01.example" {
		t.Errorf("host A status %+v", statuses[a.ID])
	}
	if statuses[b.ID].Status != "error" || statuses[b.ID].Error == "" {
		t.Errorf("host B status %+v", statuses[b.ID])
	}
	if done == nil || done.Summary.Total != 2 || done.Summary.Error != 2 || evs[len(evs)-1].Type != EventDone {
		t.Errorf("done: %+v", evs)
	}

	got, err := e.db.GetCampaign(ctx, okCamp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.Summary.OK != 2 {
		t.Errorf("ok campaign %+v", got)
	}
	for _, h := range got.Hosts {
		if h.HostID == a.ID && (len(h.Rows) != 2 || h.Rows[1]["column1"] != "value3") {
			t.Errorf("host A rows %+v", h.Rows)
		}
		if h.HostID == b.ID && (len(h.Rows) != 1 || h.Rows[0]["version"] != "0.1.0-dev") {
			t.Errorf("host B rows %+v", h.Rows)
		}
	}
	// Subscribing after the end replays everything, done last.
	replay := collect(t, mustSub(e, okCamp.ID), time.Second)
	var results, stats int
	for _, ev := range replay {
		switch ev.Type {
		case EventResult:
			results++
		case EventStatus:
			stats++
		}
	}
	if results != 2 || stats != 2 || replay[len(replay)-1].Type != EventDone {
		t.Errorf("replay %+v", replay)
	}
	// The start is audited with who, what, where from.
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "query.start"})
	if len(log) != 2 || log[0].Actor != "alice" || log[0].Source != "192.0.2.7:5555" || log[0].Detail["sql"] != "SELECT * FROM osquery_info" {
		t.Errorf("audit %+v", log)
	}
	// A host cannot answer for a campaign it was not sent, nor twice.
	wb, _ = json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyB, Queries: map[string][]map[string]string{okCamp.ID: {{"forged": "1"}}}})
	e.post(osquery.PathDistributedWrite, wb)
	got, _ = e.db.GetCampaign(ctx, okCamp.ID)
	for _, h := range got.Hosts {
		if h.HostID == b.ID && h.Rows[0]["forged"] != "" {
			t.Error("second answer overwrote the first")
		}
	}
	// Unknown node key on both endpoints.
	if _, r := e.readQueries(ctx, "bogus", 0); r.json(t)["node_invalid"] != true {
		t.Errorf("read with bogus key: %s", r.body)
	}
	if r := e.post(osquery.PathDistributedWrite, []byte(`{"node_key":"bogus","queries":{}}`)); r.json(t)["node_invalid"] != true {
		t.Errorf("write with bogus key: %s", r.body)
	}
}

func mustSub(e *env, id string) <-chan CampaignEvent {
	ch, _ := e.srv.Subscribe(id)
	return ch
}

func TestLongPollDeliversAtOnce(t *testing.T) {
	holdModes(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		key, h := e.enroll("enroll_vigil.json")
		type answer struct {
			q   map[string]string
			err string
		}
		got := make(chan answer, 1)
		go func() {
			q, r := e.readQueries(ctx, key, 30_000)
			got <- answer{q, string(r.body)}
		}()
		// Let the read reach the server and wait; then start a query. The
		// read must come back with it long before its 30 s wait is over.
		time.Sleep(50 * time.Millisecond)
		c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-got:
			if a.q[c.ID] != "SELECT 1" {
				t.Fatalf("long poll answered %s", a.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("held distributed/read not answered within 5 s of the query starting")
		}
	})
}

func TestLongPollNotForPlainOsquery(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll.json") // did not announce long_poll
	done := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(context.Background(), key, 30_000)
		done <- q
	}()
	select {
	case q := <-done:
		if len(q) != 0 {
			t.Errorf("got %v", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a host that did not announce long_poll was held")
	}
}

func TestLongPollReturnsEmptyAfterWait(t *testing.T) {
	holdModes(t, func(t *testing.T, e *env) {
		key, _ := e.enroll("enroll_vigil.json")
		q, r := e.readQueries(context.Background(), key, 20)
		if r.status != 200 || len(q) != 0 {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}

func TestCampaignTimeoutAndOffline(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.QueryTimeout = 300 * time.Millisecond; o.OfflineAfter = time.Minute })
	ctx := context.Background()
	_, a := e.enroll("enroll.json")
	// A host last seen two minutes ago is offline.
	stale, _, err := e.db.EnrollHost(ctx, vigil.Host{Identifier: "stale", Hostname: "stale", LastSeen: time.Now().Add(-2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.srv.StartCampaign(ctx, "bob", "SELECT 1", Target{Hosts: []string{a.ID, stale.ID}})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := e.srv.Subscribe(c.ID)
	defer cancel()
	evs := collect(t, ch, 10*time.Second)
	st := map[string]CampaignEvent{}
	for _, ev := range evs {
		if ev.Type == EventStatus {
			st[ev.HostID] = ev
		}
	}
	if st[stale.ID].Status != "offline" {
		t.Errorf("stale host: %+v", st[stale.ID])
	}
	if st[a.ID].Status != "timeout" || st[a.ID].Error == "" {
		t.Errorf("silent host: %+v", st[a.ID])
	}
	last := evs[len(evs)-1]
	if last.Type != EventDone || last.Summary.Timeout != 1 || last.Summary.Offline != 1 || last.Summary.Total != 2 {
		t.Errorf("done %+v", last)
	}
	// The stale host was never sent the query, and a late answer changes nothing.
	if q, _ := e.db.TakePendingQueries(ctx, stale.ID, time.Now()); len(q) != 0 {
		t.Errorf("offline host got %v", q)
	}
	if rec, _, _ := e.db.RecordResult(ctx, c.ID, a.ID, state.Result{Status: state.StatusOK}); rec {
		t.Error("late result recorded")
	}
}

func TestCampaignRestartExpires(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.QueryTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	_, a := e.enroll("enroll.json")
	c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{a.ID}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Close() // the server goes away before the deadline
	time.Sleep(250 * time.Millisecond)
	srv2, err := New(Options{State: e.db})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	evs := collect(t, mustSubSrv(srv2, c.ID), 5*time.Second)
	if len(evs) == 0 || evs[len(evs)-1].Type != EventDone || evs[len(evs)-1].Summary.Timeout != 1 {
		t.Errorf("after restart: %+v", evs)
	}
}

func mustSubSrv(s *Server, id string) <-chan CampaignEvent {
	ch, _ := s.Subscribe(id)
	return ch
}

func TestStartCampaignErrors(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.srv.StartCampaign(ctx, "a", "SELECT 1", Target{All: true}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("no hosts enrolled: %v", err)
	}
	_, h := e.enroll("enroll.json")
	for _, c := range []struct {
		sql string
		t   Target
	}{
		{"  ", Target{All: true}},
		{"SELECT 1", Target{}},
		{"SELECT 1", Target{Hosts: []string{h.ID, "ghost"}}},
		{strings.Repeat("x", MaxSQLBytes+1), Target{All: true}},
	} {
		if _, err := e.srv.StartCampaign(ctx, "a", c.sql, c.t); !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("StartCampaign(%.20q, %+v) = %v, want ErrInvalid", c.sql, c.t, err)
		}
	}
	ch, cancel := e.srv.Subscribe("nope")
	if _, ok := <-ch; ok {
		t.Error("unknown campaign channel not closed")
	}
	cancel()
}

// StartFollowed subscribes before any host can answer: its events are the
// offline hosts' at once, then each answer once, then done.
func TestStartFollowed(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OfflineAfter = time.Minute })
	ctx := context.Background()
	key, a := e.enroll("enroll.json")
	stale, _, err := e.db.EnrollHost(ctx, vigil.Host{Identifier: "stale", Hostname: "stale", LastSeen: time.Now().Add(-2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	subs := func() int {
		e.srv.hub.mu.Lock()
		defer e.srv.hub.mu.Unlock()
		return len(e.srv.hub.subs)
	}

	c, ch, cancel, err := e.srv.StartFollowed(ctx, "alice", "SELECT 1 AS one", Target{Hosts: []string{a.ID, stale.ID}})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if first := <-ch; first.Type != EventStatus || first.HostID != stale.ID || first.Status != state.StatusOffline {
		t.Fatalf("first event %+v, want the offline host's status", first)
	}
	q, _ := e.readQueries(ctx, key, 0)
	if q[c.ID] != "SELECT 1 AS one" {
		t.Fatalf("host read %v", q)
	}
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key,
		Queries: map[string][]map[string]string{c.ID: {{"one": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
	if r := e.post(osquery.PathDistributedWrite, wb); r.status != 200 {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	var got []string
	for _, ev := range collect(t, ch, 10*time.Second) {
		got = append(got, fmt.Sprintf("%s %s %s %v %d/%d/%d", ev.Type, ev.Hostname, ev.Status, ev.Rows, ev.Summary.Total, ev.Summary.OK, ev.Summary.Offline))
	}
	want := []string{
		"result " + a.Hostname + "  [map[one:1]] 0/0/0",
		"status " + a.Hostname + " ok [] 0/0/0",
		"done   [] 2/1/1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := subs(); n != 0 {
		t.Errorf("%d campaigns still have subscribers after done", n)
	}

	// Every target offline: done at once, and the channel closes.
	_, ch, cancel2, err := e.srv.StartFollowed(ctx, "alice", "SELECT 1", Target{Hosts: []string{stale.ID}})
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, ch, 5*time.Second)
	cancel2()
	if len(evs) != 2 || evs[0].Status != state.StatusOffline || evs[1].Type != EventDone || evs[1].Summary.Offline != 1 {
		t.Errorf("all offline: %+v", evs)
	}
	if _, _, _, err := e.srv.StartFollowed(ctx, "alice", "SELECT 1", Target{Hosts: []string{"ghost"}}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("unknown target: %v", err)
	}
	if n := subs(); n != 0 {
		t.Errorf("%d campaigns still have subscribers", n)
	}
}

func TestSubscribeCancel(t *testing.T) {
	e := newEnv(t, nil)
	_, h := e.enroll("enroll.json")
	c, err := e.srv.StartCampaign(context.Background(), "a", "SELECT 1", Target{Hosts: []string{h.Hostname}})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := e.srv.Subscribe(c.ID)
	cancel()
	cancel() // twice is fine
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
}

// Vigil's agent asks for its distributed/write to be held as its next
// read: the answer is recorded first, then a query started while the
// write is held comes back in its response. osquery's writes (no
// vigil_wait_ms, or a host that did not announce long_poll) get {} at once.
func TestWriteHeldAsNextRead(t *testing.T) {
	holdModes(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		key, h := e.enroll("enroll_vigil.json")
		first, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if q, _ := e.readQueries(ctx, key, 0); q[first.ID] != "SELECT 1" {
			t.Fatalf("read %v", q)
		}
		events, cancel := e.srv.Subscribe(first.ID)
		defer cancel()
		body, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key, VigilWait: 30_000,
			Queries: map[string][]map[string]string{first.ID: {{"one": "1"}}}, Statuses: map[string]osquery.Int{first.ID: 0}})
		got := make(chan response, 1)
		go func() { got <- e.postCtx(ctx, osquery.PathDistributedWrite, body) }()
		// The answer is recorded before the write is held.
		evs := collect(t, events, 5*time.Second)
		if last := evs[len(evs)-1]; last.Type != EventDone || last.Summary.OK != 1 {
			t.Fatalf("first campaign ended with %+v while the write was held", last)
		}
		second, err := e.srv.StartCampaign(ctx, "alice", "SELECT 2", Target{Hosts: []string{h.ID}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			var wr osquery.DistributedWriteResponse
			if r.status != 200 || json.Unmarshal(r.body, &wr) != nil || !wr.VigilHeld || wr.Queries[second.ID] != "SELECT 2" {
				t.Fatalf("held write answered %d %s", r.status, r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("held distributed/write not answered within 5 s of the next query starting")
		}

		// Plain osquery: no vigil_wait_ms, or no long_poll announced: {} at once.
		plainKey, plain := e.enroll("enroll.json")
		third, err := e.srv.StartCampaign(ctx, "alice", "SELECT 3", Target{Hosts: []string{plain.ID}})
		if err != nil {
			t.Fatal(err)
		}
		e.readQueries(ctx, plainKey, 0)
		body, _ = json.Marshal(osquery.DistributedWriteRequest{NodeKey: plainKey, VigilWait: 30_000,
			Queries: map[string][]map[string]string{third.ID: {{"three": "3"}}}, Statuses: map[string]osquery.Int{third.ID: 0}})
		start := time.Now()
		if r := e.post(osquery.PathDistributedWrite, body); r.status != 200 || string(bytes.TrimSpace(r.body)) != "{}" || time.Since(start) > 10*time.Second {
			t.Fatalf("osquery's write answered %d %q after %v", r.status, r.body, time.Since(start))
		}
	})
}
