package agent

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/osquery"
)

// A long-polling agent keeps one connection: its held read and its log
// sends take turns on it, so each hold lasts at most logger_tls_period and
// logs still leave about that often.
func TestLongPollOneConnection(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"u": {"query": "SELECT username FROM users", "interval": 1}}))
	const period = 300 * time.Millisecond
	r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice"), func(o *Options) {
		o.LongPoll = true
		o.LongPollWait = 20 * time.Second
		o.LoggerTLSPeriod = period
		o.DistributedInterval = time.Hour // only the long poll can answer quickly
	})
	// Results are logged every second; with the read held for 20 s they
	// would wait for it.
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "u")) >= 1 && len(srv.Reads()) >= 3 }) {
		t.Fatalf("after 10 s: %d result lines, %d reads", len(linesOf(srv, "u")), len(srv.Reads()))
	}
	waits := map[int]bool{}
	for i, rd := range srv.Reads() {
		waits[rd.VigilWait] = true
		if max := int(period / time.Millisecond); rd.VigilWait > max || rd.VigilWait < max*3/4 {
			t.Errorf("read %d asked for a %d ms hold, want %d to %d (logger_tls_period bounds LongPollWait, less a jitter)", i, rd.VigilWait, max*3/4, max)
		}
	}
	if len(waits) < 2 {
		t.Errorf("every hold asked for %v ms: no jitter", waits)
	}
	srv.AddQuery("q", "SELECT 1 AS one", "")
	if !srv.WaitFor(5*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("live query not answered within 5 s")
	}
	r.stop(t)
	if n := srv.Conns(); n != 1 {
		t.Errorf("the agent used %d connections, want 1", n)
	}
}

// A backlog of many log batches leaves at once, not one batch per hold:
// the next held read waits for the sends under way.
func TestLongPollBacklogNotPaced(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	cfg := schedule(map[string]map[string]any{"u": {"query": "SELECT username FROM users", "interval": 1}})
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	c["options"] = map[string]any{"logger_tls_max_lines": 1} // a batch per line
	cfg, _ = json.Marshal(c)
	srv.SetConfig(cfg)
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}
	start(t, srv, t.TempDir(), fixtureRoot(t, users...), func(o *Options) {
		o.LongPoll = true
		o.LongPollWait = 20 * time.Second
		o.LoggerTLSPeriod = 2 * time.Second // holds of 1.5 to 2 s
		o.DistributedInterval = time.Hour
	})
	var first time.Time
	if !srv.WaitFor(20*time.Second, func() bool {
		n := len(linesOf(srv, "u"))
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		return n >= len(users)
	}) {
		t.Fatalf("%d of %d result lines after 20 s", len(linesOf(srv, "u")), len(users))
	}
	// Paced by holds, 8 batches would take 7 holds of at least 1.5 s.
	if d := time.Since(first); d > 5*time.Second {
		t.Errorf("the %d batches took %v from the first to the last: the backlog waited for holds", len(users), d)
	}
	if n := srv.LogPosts(); n < len(users) {
		t.Errorf("%d log posts, want one per line (logger_tls_max_lines 1)", n)
	}
}

// The answer to a live query that ends a hold goes out before a log send
// that fell due during the hold: the send waits for the agent's turn on its
// one connection (Agent.turn), not in the transport's queue, where it
// would take the connection as soon as the hold ended.
func TestLongPollAnswerBeforeWaitingLogs(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice"), func(o *Options) {
		o.LongPoll = true
		o.LongPollWait = 20 * time.Second
		o.LoggerTLSPeriod = time.Hour // holds of 20 s; only the test ships
		o.DistributedInterval = time.Hour
	})
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Reads()) >= 1 }) {
		t.Fatal("no read within 10 s")
	}
	time.Sleep(100 * time.Millisecond) // the read is held
	line := `{"name":"waiting","hostIdentifier":"h","calendarTime":"Mon Jan  1 00:00:00 2024 UTC","unixTime":1704067200,"epoch":0,"counter":0,"numerics":false,"columns":{"a":"1"},"action":"added"}`
	if _, err := r.a.results.Append([]byte(line)); err != nil {
		t.Fatal(err)
	}
	shipped := make(chan error, 1)
	go func() { shipped <- r.a.shipOnce(context.Background()) }()
	select {
	case err := <-shipped:
		t.Fatalf("the log send did not wait for the held read (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	srv.AddQuery("q", "SELECT 1 AS one", "")
	select {
	case err := <-shipped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting log send did not leave within 10 s of the hold's end")
	}
	if n := len(linesOf(srv, "waiting")); n != 1 {
		t.Fatalf("the server got %d of the waiting line", n)
	}
	order := srv.Order()
	write, lastLog := -1, -1
	for i, p := range order {
		switch {
		case p == osquery.PathDistributedWrite && write < 0:
			write = i
		case p == osquery.PathLog:
			lastLog = i
		}
	}
	if write < 0 || write > lastLog {
		t.Fatalf("requests in order %v: the answer (distributed/write) must come before the log send that waited", order)
	}
	// The write was not held as the next read: the log send was waiting.
	if w := srv.Writes(); len(w) != 1 || w[0].VigilWait != 0 {
		t.Fatalf("writes %+v: want one, not held (vigil_wait_ms 0) while a log send waits", w)
	}
}
