package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
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
