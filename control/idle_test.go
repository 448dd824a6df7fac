package control

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// Between requests a connection waits off net/http and is served again
// when the next request comes; the responses are those net/http would
// send.
func TestIdleBetweenRequests(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll.json")
	waitStats(t, e, "the enrollment's connection waits idle", func(s Stats) bool { return s.IdleConns == 1 })
	accepted := e.ln.accepted.Load()

	rc := e.dialRaw(t)
	logBody := `{"node_key":"` + key + `","log_type":"status","data":[{"line":"1"}]}`
	for i := range 3 {
		io.WriteString(rc.c, rawRequest(osquery.PathLog, logBody))
		resp, body := rc.response(t)
		if resp.StatusCode != 200 || body != "{}\n" || resp.Close || resp.ContentLength != 3 ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Date") == "" {
			t.Fatalf("log %d: %d close=%v length=%d %v %q", i, resp.StatusCode, resp.Close, resp.ContentLength, resp.Header, body)
		}
		waitStats(t, e, "the connection waits idle", func(s Stats) bool { return s.IdleConns == 2 })
	}
	// An error is sent the same way.
	io.WriteString(rc.c, rawRequest(osquery.PathConfig, `{"node_key":"stale"}`))
	if resp, body := rc.response(t); resp.StatusCode != 200 || !strings.Contains(body, `"node_invalid":true`) {
		t.Fatalf("stale key: %d %q", resp.StatusCode, body)
	}
	io.WriteString(rc.c, rawRequest(osquery.PathLog, `{"node_key": `))
	if resp, body := rc.response(t); resp.StatusCode != 400 || !strings.Contains(body, "error") {
		t.Fatalf("bad body: %d %q", resp.StatusCode, body)
	}
	if n := e.ln.accepted.Load() - accepted; n != 1 {
		t.Errorf("%d connections accepted for the five requests, want 1", n)
	}
	if n := e.ln.rejoined.Load(); n != 4 {
		t.Errorf("%d connections handed back, want 4 (when each request after the first came)", n)
	}
	// A body left unread (refused before reading) stays net/http's to
	// deal with: the answer goes as it would, and the connection serves on.
	io.WriteString(rc.c, rawRequest(osquery.PathLog, logBody, "Content-Encoding", "br"))
	if resp, body := rc.response(t); resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, "Content-Encoding") {
		t.Fatalf("unread body: %d %q", resp.StatusCode, body)
	}
	io.WriteString(rc.c, rawRequest(osquery.PathLog, logBody))
	if resp, body := rc.response(t); resp.StatusCode != 200 || body != "{}\n" {
		t.Fatalf("after the unread body: %d %q", resp.StatusCode, body)
	}

	// A long-polling agent's connection stays with net/http: its next
	// request, a hold, comes at once.
	vkey, _ := e.enroll("enroll_vigil.json")
	vc := e.dialRaw(t)
	rejoined := e.ln.rejoined.Load()
	for range 2 {
		io.WriteString(vc.c, rawRequest(osquery.PathLog, `{"node_key":"`+vkey+`","log_type":"status","data":[]}`))
		if resp, _ := vc.response(t); resp.StatusCode != 200 {
			t.Fatalf("long-polling agent's log: %d", resp.StatusCode)
		}
	}
	if n := e.ln.rejoined.Load() - rejoined; n != 0 {
		t.Errorf("a long-polling agent's connection was handed back %d times", n)
	}

	// Asked to close: answered, then closed.
	io.WriteString(rc.c, rawRequest(osquery.PathLog, logBody, "Connection", "close"))
	resp, _ := rc.response(t)
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("log asking to close: %d close=%v", resp.StatusCode, resp.Close)
	}
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: read %v, want EOF", err)
	}
}

// A request pipelined behind another is served after it, also when the
// first ends exactly where net/http's 4 KB read buffer does and the second
// comes in the same TLS record (net/http's byte read ahead brings it).
func TestIdlePipelined(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll.json")
	first := func(size int) string {
		pad := 0
		for {
			body := `{"node_key":"` + key + `","log_type":"status","data":[{"line":"1"}]` + strings.Repeat(" ", pad) + `}`
			r := rawRequest(osquery.PathLog, body)
			if len(r) >= size {
				if len(r) != size {
					t.Fatalf("cannot make a request of %d bytes", size)
				}
				return r
			}
			pad++
		}
	}
	second := rawRequest(osquery.PathDistributedRead, `{"node_key":"`+key+`"}`)
	for _, size := range []int{1000, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			// Both requests in one record.
			rc := e.dialRaw(t, func(c *tls.Config) { c.DynamicRecordSizingDisabled = true })
			if _, err := io.WriteString(rc.c, first(size)+second); err != nil {
				t.Fatal(err)
			}
			if resp, body := rc.response(t); resp.StatusCode != 200 || body != "{}\n" {
				t.Fatalf("first: %d %q", resp.StatusCode, body)
			}
			if resp, body := rc.response(t); resp.StatusCode != 200 || body != `{"queries":{}}`+"\n" {
				t.Fatalf("pipelined: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// A connection idle for Options.IdleTimeout is closed; Close closes those
// waiting.
func TestIdleTimeoutAndClose(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	key, _ := e.enroll("enroll.json")
	rc := e.dialRaw(t)
	io.WriteString(rc.c, rawRequest(osquery.PathLog, `{"node_key":"`+key+`","log_type":"status","data":[]}`))
	if resp, _ := rc.response(t); resp.StatusCode != 200 {
		t.Fatalf("log: %d", resp.StatusCode)
	}
	start := time.Now()
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v idle, want 200ms", d)
	}
	waitStats(t, e, "no connection waits", func(s Stats) bool { return s.IdleConns == 0 })

	e2 := newEnv(t, nil)
	key, _ = e2.enroll("enroll.json")
	rc = e2.dialRaw(t)
	io.WriteString(rc.c, rawRequest(osquery.PathLog, `{"node_key":"`+key+`","log_type":"status","data":[]}`))
	if resp, _ := rc.response(t); resp.StatusCode != 200 {
		t.Fatalf("log: %d", resp.StatusCode)
	}
	waitStats(t, e2, "the connection waits idle", func(s Stats) bool { return s.IdleConns == 2 })
	e2.srv.Close()
	if _, err := rc.r.ReadByte(); err != io.EOF {
		t.Fatalf("after Close: read %v, want EOF", err)
	}
	waitStats(t, e2, "no connection waits after Close", func(s Stats) bool { return s.IdleConns == 0 })
}
