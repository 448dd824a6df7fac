package control

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

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
		got := make(chan response, 1)
		go func() { got <- e.post(osquery.PathLog, logBody(key, 30_000)) }()
		waitStats(t, e, "log held", func(s Stats) bool { return s.HeldReads == 1 })
		if n := len(e.sink.Calls()); n != 1 {
			t.Fatalf("%d sink calls while the log is held, want its lines in before the hold", n)
		}
		select {
		case r := <-got:
			t.Fatalf("held log answered before any query: %d %s", r.status, r.body)
		case <-time.After(100 * time.Millisecond):
		}
		c, err := e.srv.StartCampaign(context.Background(), "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			var lr osquery.LogResponse
			if r.status != 200 || json.Unmarshal(r.body, &lr) != nil || !lr.VigilHeld || lr.Queries[c.ID] != "SELECT 1" {
				t.Fatalf("held log answered %d %s", r.status, r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("held log not answered within 5 s of the query starting")
		}

		plainKey, _ := e.enroll("enroll.json")
		start := time.Now()
		if r := e.post(osquery.PathLog, logBody(plainKey, 30_000)); r.status != 200 || string(r.body) != "{}\n" {
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
