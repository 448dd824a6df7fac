package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/osquery"
)

// A long-polling agent keeps one connection: every request on it is held
// at most until the next log send is due, so logs still leave about every
// logger_tls_period, with a jitter.
func TestLongPollOneConnection(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	const period = 300 * time.Millisecond
	r := startLongPoll(t, srv, period)
	// Results are logged every second; with requests held for 20 s they
	// would wait for them.
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "u")) >= 3 && len(srv.Reads()) >= 1 }) {
		t.Fatalf("after 10 s: %d result lines, %d reads", len(linesOf(srv, "u")), len(srv.Reads()))
	}
	max := int(period / time.Millisecond)
	for i, rd := range srv.Reads() {
		if rd.VigilWait < 1 || rd.VigilWait > max {
			t.Errorf("read %d asked for a %d ms hold, want 1 to %d (until the next log send)", i, rd.VigilWait, max)
		}
	}
	waits := map[int]bool{}
	for i, l := range srv.Logs() {
		waits[l.VigilWait] = true
		if l.VigilWait < max*3/4-50 || l.VigilWait > max {
			t.Errorf("log send %d asked for a %d ms hold, want about %d to %d (a log period less a jitter)", i, l.VigilWait, max*3/4, max)
		}
	}
	if len(waits) < 2 {
		t.Errorf("every log send asked for %v ms: no jitter", waits)
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

// A log send held as the next read brings the live query that came while
// it was held: the agent answers it without a read, and sends no read
// while it has logs to send.
func TestLongPollLogHeldAsRead(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	r := startLongPoll(t, srv, 2*time.Second) // a line to send at every send
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Logs()) >= 2 && heldLog(srv) }) {
		t.Fatalf("%d log sends after 10 s, none held", len(srv.Logs()))
	}
	srv.AddQuery("q", "SELECT 1 AS one", "")
	if !srv.WaitFor(5*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("live query not answered within 5 s")
	}
	r.stop(t)
	// Config refreshes go on the connection between the others.
	order := slices.DeleteFunc(srv.Order(), func(p string) bool { return p == osquery.PathConfig })
	write := slices.Index(order, osquery.PathDistributedWrite)
	if write < 1 || order[write-1] != osquery.PathLog {
		t.Fatalf("requests in order %v (log sends %+v): the write must follow the held log send that brought its query", order, srv.Logs())
	}
	// (This server does not hold writes: a read follows the write.)
	if n := slices.Index(order, osquery.PathLog); slices.Contains(order[n:write], osquery.PathDistributedRead) {
		t.Errorf("requests in order %v: with a line to send at every send, no read is needed between sends", order)
	}
}

// startLongPoll starts a long-polling agent that sends its logs every
// period and has a line to send every second (a snapshot of alice).
func startLongPoll(t *testing.T, srv *agenttest.Server, period time.Duration) *running {
	t.Helper()
	srv.SetConfig(schedule(map[string]map[string]any{"u": {"query": "SELECT username FROM users", "interval": 1, "snapshot": true}}))
	return start(t, srv, t.TempDir(), fixtureRoot(t, "alice"), func(o *Options) {
		o.LongPoll = true
		o.LongPollWait = 20 * time.Second
		o.LoggerTLSPeriod = period
		o.DistributedInterval = time.Hour // only the long poll can answer quickly
	})
}

// heldLog tells whether the server holds the agent's last request and it
// is a log send.
func heldLog(srv *agenttest.Server) bool {
	order := slices.DeleteFunc(srv.Order(), func(p string) bool { return p == osquery.PathConfig })
	return srv.Holding() == 1 && len(order) > 0 && order[len(order)-1] == osquery.PathLog
}

// The lines of a held log send leave the spool when its status comes, not
// when the hold ends: an agent stopped during the hold does not send them
// again.
func TestLongPollHeldLogNotResent(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	r := startLongPoll(t, srv, 10*time.Second) // the held send outlasts the test
	if !srv.WaitFor(20*time.Second, func() bool { return heldLog(srv) }) {
		t.Fatalf("no held log send within 20 s (log sends %+v)", srv.Logs())
	}
	r.stop(t)
	seen := map[string]int{}
	for _, l := range srv.RawResults() {
		seen[string(l)]++
	}
	for l, n := range seen {
		if n > 1 {
			t.Errorf("line sent %d times: %.120s", n, l)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no result line reached the server")
	}
}

// Against a server that answers log sends at once (osquery's), the agent
// holds a read between sends, as it would without held logs.
func TestLongPollLogsNotHeld(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetHoldLogs(false)
	r := startLongPoll(t, srv, time.Second)
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Logs()) >= 3 }) {
		t.Fatalf("%d log sends after 10 s", len(srv.Logs()))
	}
	time.Sleep(200 * time.Millisecond) // a read is held
	srv.AddQuery("q", "SELECT 1 AS one", "")
	if !srv.WaitFor(5*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("live query not answered within 5 s")
	}
	r.stop(t)
	if n := len(srv.Reads()); n < 3 {
		t.Errorf("%d reads for %d log sends: the agent did not hold a read after sends answered at once", n, len(srv.Logs()))
	}
}

// Against a server that holds nothing (osquery's), a long-polling agent
// polls every distributed_interval once two reads in a row came back
// empty at once, and still answers live queries.
func TestLongPollFallsBackToPolling(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetHoldReads(false)
	srv.SetHoldLogs(false)
	r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice"), func(o *Options) {
		o.LongPoll = true
		o.LongPollWait = 20 * time.Second
		o.LoggerTLSPeriod = time.Hour
		o.DistributedInterval = time.Second
	})
	time.Sleep(3500 * time.Millisecond)
	if n := len(srv.Reads()); n < 3 || n > 8 {
		t.Errorf("%d reads in 3.5 s, want two at once and then one a second", n)
	}
	srv.AddQuery("q", "SELECT 1 AS one", "")
	if !srv.WaitFor(5*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("live query not answered within 5 s at a 1 s interval")
	}
	r.stop(t)
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

// The answer to a live query goes out before a log send that fell due
// while the query ran, and is not held: the send would wait for the hold.
func TestLongPollAnswerBeforeDueLog(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	const period = 100 * time.Millisecond
	r := startLongPoll(t, srv, period)
	// A query that runs longer than the log period, so that a send falls
	// due while it runs.
	slow := "SELECT count(*) AS n FROM (" + wideRows(100_000, 1) + ")"
	for {
		start := time.Now()
		if _, err := r.a.Engine().Query(context.Background(), slow); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 3*period {
			break
		}
		slow = strings.Replace(slow, "x < ", "x < 4 * ", 1)
	}
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Logs()) >= 1 }) {
		t.Fatal("no log send within 10 s")
	}
	srv.AddQuery("q", slow, "")
	if !srv.WaitFor(30*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("the slow live query not answered within 30 s")
	}
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "u")) >= 3 }) {
		t.Fatal("logging stopped after the live query")
	}
	r.stop(t)
	order := srv.Order()
	write := slices.Index(order, osquery.PathDistributedWrite)
	if write < 0 || !slices.Contains(order[write:], osquery.PathLog) {
		t.Fatalf("requests in order %v: want the write, then log sends", order)
	}
	if w := srv.Writes()[0]; w.VigilWait != 0 {
		t.Errorf("the write asked for a %d ms hold while a log send was due", w.VigilWait)
	}
}
