package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

// otherHost enrolls another long-polling host, n naming it.
func otherHost(e *env, n int) (string, vigil.Host) {
	return e.enroll("enroll_vigil.json", "laptop-7", fmt.Sprintf("laptop-%d", 100+n),
		"9d1b6e2a-7d4f-4a61-9a77-0c2f5b8e1d33", fmt.Sprintf("9d1b6e2a-7d4f-4a61-9a77-0c2f5b8e%04d", n))
}

func logBody(key string, waitMS int) []byte {
	b, _ := json.Marshal(osquery.LogRequest{NodeKey: key, LogType: osquery.LogTypeResult,
		Data: []json.RawMessage{json.RawMessage(`{"name":"q","action":"added","columns":{"a":"1"}}`)}, VigilWait: waitMS})
	return b
}

// A long-polling agent's log send asks to be held as its next read: the
// lines are in the sink before the hold, and a live query started while
// it is held comes back in its answer. An osquery host asking the same
// gets {} at once, and a log the sink refuses is not held.
func TestLogHeldAsRead(t *testing.T) {
	holdModes(t, func(t *testing.T, e *env) {
		key, h := e.enroll("enroll_vigil.json")
		req, _ := http.NewRequest("POST", e.http.URL+osquery.PathLog, bytes.NewReader(logBody(key, 30_000)))
		resp, err := e.client.Do(req) // returns with the status, the hold still on
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(osquery.HeaderHeld) != "1" {
			t.Fatalf("held log's status %d, headers %v: want 200 with %s before the hold ends", resp.StatusCode, resp.Header, osquery.HeaderHeld)
		}
		if n := len(e.sink.Calls()); n != 1 {
			t.Fatalf("%d sink calls once the status came, want the lines in", n)
		}
		waitStats(t, e, "log held", func(s Stats) bool { return s.HeldReads == 1 })
		body := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(resp.Body)
			body <- b
		}()
		select {
		case b := <-body:
			t.Fatalf("held log answered before any query: %s", b)
		case <-time.After(100 * time.Millisecond):
		}
		c, err := e.srv.StartCampaign(context.Background(), "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-body:
			var lr osquery.LogResponse
			if json.Unmarshal(b, &lr) != nil || !lr.VigilHeld || lr.Queries[c.ID] != "SELECT 1" {
				t.Fatalf("held log answered %s", b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("held log not answered within 5 s of the query starting")
		}

		plainKey, _ := e.enroll("enroll.json")
		start := time.Now()
		if r := e.post(osquery.PathLog, logBody(plainKey, 30_000)); r.status != 200 || string(r.body) != "{}\n" || r.header.Get(osquery.HeaderHeld) != "" {
			t.Fatalf("osquery host's log: %d %q, want {}", r.status, r.body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("osquery host's log held %v", d)
		}

		e.sink.mu.Lock()
		e.sink.err = fmt.Errorf("disk full: %w", vigil.ErrUnavailable)
		e.sink.mu.Unlock()
		if r := e.post(osquery.PathLog, logBody(key, 30_000)); r.status != 503 {
			t.Fatalf("refused log: %d %s, want 503 at once", r.status, r.body)
		}
	})
}

// A parked hold whose time runs out while a live query's priority window
// is open lasts until the window closes; a query for its host still
// wakes it at once.
func TestHoldEndDeferredToWindow(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = 4 * time.Second }) // twice that is under maxDeferral
	ctx := context.Background()
	// A query to a held host that does not answer yet keeps the window open.
	keyA, a := e.enroll("enroll_vigil.json")
	go e.readQueries(ctx, keyA, 30_000)
	waitFor(t, "a's read is held", func() bool { return e.srv.notify.held(a.ID) })
	c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{a.ID}})
	if err != nil {
		t.Fatal(err)
	}
	win := e.srv.Yield()
	if win == nil {
		t.Fatal("no window")
	}

	keyB, _ := otherHost(e, 1)
	keyC, hc := otherHost(e, 2)
	ended := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(ctx, keyB, 50)
		ended <- q
	}()
	woken := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(ctx, keyC, 50)
		woken <- q
	}()
	waitStats(t, e, "both holds' time ran out", func(s Stats) bool { return s.HoldsExtended == 2 })
	select {
	case q := <-ended:
		t.Fatalf("a hold of 50ms ended (%v) inside the window", q)
	case <-time.After(200 * time.Millisecond):
	}

	c2, err := e.srv.StartCampaign(ctx, "alice", "SELECT 2", Target{Hosts: []string{hc.ID}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-woken:
		if q[c2.ID] != "SELECT 2" {
			t.Fatalf("extended hold woken with %v", q)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an extended hold was not woken by a query for its host")
	}

	// Both campaigns answered: the window closes, and the hold with it.
	for _, w := range []struct{ key, id string }{{keyA, c.ID}, {keyC, c2.ID}} {
		wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: w.key,
			Queries: map[string][]map[string]string{w.id: {{"1": "1"}}}, Statuses: map[string]osquery.Int{w.id: 0}})
		go e.post(osquery.PathDistributedWrite, wb)
	}
	select {
	case <-win:
	case <-time.After(10 * time.Second):
		t.Fatal("window still open 10 s after both answers")
	}
	select {
	case q := <-ended:
		if len(q) != 0 {
			t.Fatalf("extended hold ended with %v", q)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the extended hold did not end within 5 s of the window closing")
	}
}

// A window that may last longer than maxDeferral does not hold back the
// end of other holds: agents give up on a request some 30 s past its
// wait.
func TestHoldNotDeferredPastCap(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = time.Hour })
	ctx := context.Background()
	keyA, a := e.enroll("enroll_vigil.json")
	go e.readQueries(ctx, keyA, 30_000)
	waitFor(t, "a's read is held", func() bool { return e.srv.notify.held(a.ID) })
	if _, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{a.ID}}); err != nil {
		t.Fatal(err)
	}
	keyB, _ := otherHost(e, 1)
	start := time.Now()
	if q, r := e.readQueries(ctx, keyB, 50); r.status != 200 || len(q) != 0 {
		t.Fatalf("hold: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hold of 50ms lasted %v in a window of up to 2h", d)
	}
	if n := e.srv.Stats().HoldsExtended; n != 0 {
		t.Errorf("%d holds extended", n)
	}
}
