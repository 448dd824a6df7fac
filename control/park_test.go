package control

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// holdModes runs f against a server whose long polls are parked (as
// cmd/vigil serves them), one whose holds net/http keeps (no Rejoin), and
// a parking one reached over HTTP/2, where holds cannot be parked.
func holdModes(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("parked", func(t *testing.T) { f(t, newEnv(t, nil)) })
	t.Run("held", func(t *testing.T) { f(t, newEnv(t, func(o *Options) { o.Rejoin = nil })) })
	t.Run("http2", func(t *testing.T) {
		e := newEnv(t, nil)
		tr := e.client.Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2 = true
		e.client = &http.Client{Transport: tr}
		f(t, e)
	})
}

// waitStats polls the server's counters until ok or 5 s.
func waitStats(t *testing.T, e *env, what string, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(e.srv.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never true; stats %+v", what, e.srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A parked hold waits without net/http, is answered by a query started
// while it waits or at its end, and its connection then serves the
// agent's next requests: one TCP connection for all of them, enrollment
// included.
func TestParkedHold(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	key, h := e.enroll("enroll_vigil.json")

	c := heldRead(t, e, key, h.ID, "read parked", func(s Stats) bool { return s.ParkedHolds == 1 && s.HeldReads == 1 })
	if s := e.srv.Stats(); s.ParkedHolds != 0 || s.HeldReads != 0 || s.QueriesDelivered != 1 {
		t.Errorf("after the answer: %+v", s)
	}

	// A hold that ends empty, then a write held as the next read, a log
	// and a plain read, all on the connection the first hold used.
	start := time.Now()
	if q, r := e.readQueries(ctx, key, 150); r.status != 200 || len(q) != 0 || string(r.body) != `{"queries":{}}`+"\n" {
		t.Fatalf("hold's end: %d %q", r.status, r.body)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("hold of 150ms answered after %v", d)
	}
	body, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key, VigilWait: 100,
		Queries: map[string][]map[string]string{c.ID: {{"1": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
	r := e.post(osquery.PathDistributedWrite, body)
	var wr osquery.DistributedWriteResponse
	if r.status != 200 || json.Unmarshal(r.body, &wr) != nil || !wr.VigilHeld || len(wr.Queries) != 0 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("held write: %d %v %q", r.status, r.header, r.body)
	}
	if r := e.post(osquery.PathLog, []byte(`{"node_key":"`+key+`","log_type":"status","data":[{"line":"1"}]}`)); r.status != 200 {
		t.Fatalf("log after holds: %d %s", r.status, r.body)
	}
	if q, r := e.readQueries(ctx, key, 0); r.status != 200 || len(q) != 0 {
		t.Fatalf("plain read: %d %s", r.status, r.body)
	}
	if n := e.ln.accepted.Load(); n != 1 {
		t.Errorf("%d connections for six requests, three of them parked; want 1", n)
	}
	// Handed back after each of the three parked holds, and when the
	// first read came after the enrollment, which waited idle (idle.go);
	// a long-polling host's log and plain read stay with net/http.
	if n := e.ln.rejoined.Load(); n != 4 {
		t.Errorf("%d connections handed back, want 4", n)
	}
	if s := e.srv.Stats(); s.ParkedHolds != 0 || s.HeldReads != 0 || s.IdleConns != 0 {
		t.Errorf("at rest: %+v", s)
	}
}

// Over HTTP/2 a hold cannot be parked (streams share the connection):
// net/http keeps it, and it is still answered at once.
func TestHoldNotParkedOverHTTP2(t *testing.T) {
	e := newEnv(t, nil)
	tr := e.client.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	e.client = &http.Client{Transport: tr}
	key, h := e.enroll("enroll_vigil.json")
	heldRead(t, e, key, h.ID, "read held, not parked", func(s Stats) bool { return s.HeldReads == 1 && s.ParkedHolds == 0 })
}

// heldRead sends a long-poll read for the host, waits until the server's
// counters say it is held as held says, then starts a live query to the
// host: the read must come back with it at once. It returns the query.
func heldRead(t *testing.T, e *env, key, hostID, what string, held func(Stats) bool) Campaign {
	t.Helper()
	got := make(chan response, 1)
	go func() {
		_, r := e.readQueries(context.Background(), key, 30_000)
		got <- r
	}()
	waitStats(t, e, what, held)
	c, err := e.srv.StartCampaign(context.Background(), "alice", "SELECT 1", Target{Hosts: []string{hostID}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		var dr osquery.DistributedReadResponse
		if r.status != 200 || json.Unmarshal(r.body, &dr) != nil || dr.Queries[c.ID] != "SELECT 1" {
			t.Fatalf("%s: answered %d %s", what, r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not answered within 5 s of the query starting", what)
	}
	return c
}

// rawConn is an HTTP/1.1 connection driven by hand.
type rawConn struct {
	c *tls.Conn
	r *bufio.Reader
}

// dialRaw connects over HTTP/1.1 for requests written by hand; mod, if
// given, changes the TLS configuration.
func (e *env) dialRaw(t *testing.T, mod ...func(*tls.Config)) *rawConn {
	t.Helper()
	tr := e.client.Transport.(*http.Transport)
	cfg := tr.TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	for _, m := range mod {
		m(cfg)
	}
	c, err := tls.Dial("tcp", strings.TrimPrefix(e.http.URL, "https://"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{c: c, r: bufio.NewReader(c)}
}

func rawRequest(path, body string, header ...string) string {
	h := ""
	for i := 0; i+1 < len(header); i += 2 {
		h += header[i] + ": " + header[i+1] + "\r\n"
	}
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", path, len(body), h, body)
}

func (rc *rawConn) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// A request sent behind a parked one on the same connection (pipelined)
// is served after its answer; one that asked to close the connection
// gets its answer, then the close.
func TestParkedHoldPipelinedAndClose(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll_vigil.json")
	read := func(wait int) string { return string(nodeBody(key, wait)) }
	waitStats(t, e, "the enrollment's connection waits idle", func(s Stats) bool { return s.IdleConns == 1 })

	rc := e.dialRaw(t)
	if _, err := io.WriteString(rc.c, rawRequest(osquery.PathDistributedRead, read(100))+rawRequest(osquery.PathDistributedRead, read(0))); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		resp, body := rc.response(t)
		if resp.StatusCode != 200 || body != `{"queries":{}}`+"\n" {
			t.Fatalf("pipelined response %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// After the parked hold's answer, with the pipelined request (a
	// long-polling host's: it stays with net/http).
	if n := e.ln.rejoined.Load(); n != 1 {
		t.Errorf("%d connections handed back, want 1", n)
	}

	rc = e.dialRaw(t)
	io.WriteString(rc.c, rawRequest(osquery.PathDistributedRead, read(50), "Connection", "close"))
	resp, body := rc.response(t)
	if resp.StatusCode != 200 || body != `{"queries":{}}`+"\n" || !resp.Close {
		t.Fatalf("read asking to close: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: read %v, want EOF", err)
	}
	if n := e.ln.rejoined.Load(); n != 1 {
		t.Errorf("a connection asked to close was handed back (%d)", n)
	}
}

// Closing the server answers parked holds at once and closes their
// connections.
func TestParkedHoldsAnsweredAtClose(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll_vigil.json")
	rc := e.dialRaw(t)
	io.WriteString(rc.c, rawRequest(osquery.PathDistributedRead, string(nodeBody(key, 30_000))))
	waitStats(t, e, "read parked", func(s Stats) bool { return s.ParkedHolds == 1 })
	start := time.Now()
	e.srv.Close()
	resp, body := rc.response(t)
	if resp.StatusCode != 200 || body != `{"queries":{}}`+"\n" {
		t.Fatalf("at close: %d %q", resp.StatusCode, body)
	}
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: read %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered %v after Close", d)
	}
	if s := e.srv.Stats(); s.ParkedHolds != 0 || s.HeldReads != 0 {
		t.Errorf("after Close: %+v", s)
	}
}

// The wake queue runs everything pushed, in order on one worker, and
// close runs what is still queued before it returns.
func TestWakeQueue(t *testing.T) {
	var wq wakeQueue
	wq.start(1)
	gate := make(chan struct{})
	wq.push(func() { <-gate }) // the worker waits here while the rest is queued
	var ran []int
	for i := range 100 {
		wq.push(func() { ran = append(ran, i) })
	}
	close(gate)
	wq.close()
	if len(ran) != 100 {
		t.Fatalf("ran %d of 100", len(ran))
	}
	for i, v := range ran {
		if v != i {
			t.Fatalf("ran %v, want 0..99 in order", ran)
		}
	}
	// After close, a push still runs.
	done := make(chan struct{})
	wq.push(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a push after close never ran")
	}
}
