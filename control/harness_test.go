package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
)

const testSecret = "test-enroll-secret-0123456789"

// fakeSink records what the server hands to ingest.
type fakeSink struct {
	mu      sync.Mutex
	calls   []sinkCall
	err     error
	discard bool // benchmarks: count nothing, keep nothing
}

type sinkCall struct {
	host    vigil.Host
	logType string
	lines   []json.RawMessage
}

func (f *fakeSink) Log(ctx context.Context, host vigil.Host, logType string, lines []json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if f.discard {
		return nil
	}
	f.calls = append(f.calls, sinkCall{host, logType, lines})
	return nil
}

func (f *fakeSink) Calls() []sinkCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sinkCall(nil), f.calls...)
}

var _ LogSink = (*fakeSink)(nil)

type env struct {
	t      testing.TB
	db     *state.DB
	srv    *Server
	sink   *fakeSink
	http   *httptest.Server
	ln     *rejoinListener
	client *http.Client
}

// parkHolds in Options.Rejoin asks serve to park long polls, as cmd/vigil
// does; tests of the holds net/http keeps leave Rejoin nil.
func parkHolds(net.Conn) bool { panic("replaced by serve") }

// serve starts a control server built from opts over real TLS (HTTP/1.1,
// and HTTP/2 for clients that ask), with its connections handed back
// through a rejoinListener when opts.Rejoin is parkHolds.
func serve(t testing.TB, opts Options, bundle pki.Bundle) (*Server, *httptest.Server, *rejoinListener) {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := bundle.TLSConfig().Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	rl := newRejoinListener(tls.NewListener(tcp, cfg))
	if opts.Rejoin != nil {
		opts.Rejoin = rl.rejoin
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := &httptest.Server{Listener: rl, Config: &http.Server{Handler: srv.Handler(), TLSConfig: cfg}}
	hs.Start()
	hs.URL = "https://" + tcp.Addr().String()
	// Close the control server before the HTTP server: it releases held
	// long polls, which the HTTP server would otherwise wait out.
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return srv, hs, rl
}

// rejoinListener is a listener whose Accept also returns the connections
// handed back to it, as cmd/vigil's is. It counts the connections it
// accepted from the network.
type rejoinListener struct {
	net.Listener
	fresh    chan net.Conn
	back     chan net.Conn
	done     chan struct{}
	once     sync.Once
	accepted atomic.Int64
	rejoined atomic.Int64
}

func newRejoinListener(ln net.Listener) *rejoinListener {
	l := &rejoinListener{Listener: ln, fresh: make(chan net.Conn), back: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				l.Close()
				return
			}
			l.accepted.Add(1)
			select {
			case l.fresh <- c:
			case <-l.done:
				c.Close()
				return
			}
		}
	}()
	return l
}

func (l *rejoinListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.fresh:
		return c, nil
	case c := <-l.back:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *rejoinListener) rejoin(c net.Conn) bool {
	select {
	case l.back <- c:
		l.rejoined.Add(1)
		return true
	case <-l.done:
		return false
	}
}

func (l *rejoinListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

var testConfig = osquery.Config{Schedule: map[string]osquery.ScheduledQuery{
	"processes":     {Query: "SELECT name, path, pid FROM processes;", Interval: 10},
	"process_audit": {Query: "SELECT * FROM process_events WHERE time > 0", Interval: 10},
}, Packs: map[string]json.RawMessage{
	"net": json.RawMessage(`{"queries": {"sockets": {"query": "SELECT * FROM socket_events", "interval": 30}}}`),
	"ext": json.RawMessage(`"/etc/osquery/packs/ext.conf"`),
}}

// newEnv starts a control server over real TLS with a private CA, and a
// client pinning that CA.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	db, err := state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sink := &fakeSink{}
	opts := Options{State: db, Ingest: sink, EnrollSecret: testSecret,
		Config: func(vigil.Host) osquery.Config { return testConfig }, Rejoin: parkHolds}
	if mod != nil {
		mod(&opts)
	}
	bundle, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, hs, rl := serve(t, opts, bundle)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}}}
	return &env{t: t, db: db, srv: srv, sink: sink, http: hs, ln: rl, client: client}
}

// fixture reads testdata/name with placeholders replaced.
func fixture(t testing.TB, name string, repl ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.NewReplacer(repl...).Replace(string(b)))
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not JSON: %q", r.status, r.body)
	}
	return m
}

func (e *env) post(path string, body []byte, header ...string) response {
	e.t.Helper()
	return e.postCtx(context.Background(), path, body, header...)
}

func (e *env) postCtx(ctx context.Context, path string, body []byte, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "osquery/5.12.1")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// enroll enrolls with a fixture and returns the node key and host.
func (e *env) enroll(fixtureName string, repl ...string) (string, vigil.Host) {
	e.t.Helper()
	r := e.post(osquery.PathEnroll, fixture(e.t, fixtureName, append([]string{"ENROLL_SECRET", testSecret}, repl...)...))
	if r.status != 200 {
		e.t.Fatalf("enroll: %d %s", r.status, r.body)
	}
	var er osquery.EnrollResponse
	json.Unmarshal(r.body, &er)
	if er.NodeKey == "" || er.NodeInvalid {
		e.t.Fatalf("enroll answered %s", r.body)
	}
	h, err := e.db.HostByNodeKey(context.Background(), er.NodeKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return er.NodeKey, h
}

func nodeBody(key string, waitMS int) []byte {
	b, _ := json.Marshal(osquery.NodeRequest{NodeKey: key, VigilWait: waitMS})
	return b
}

// readQueries does one distributed/read.
func (e *env) readQueries(ctx context.Context, key string, waitMS int) (map[string]string, response) {
	e.t.Helper()
	r := e.postCtx(ctx, osquery.PathDistributedRead, nodeBody(key, waitMS))
	var dr osquery.DistributedReadResponse
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &dr); err != nil {
			e.t.Fatalf("distributed/read: %q", r.body)
		}
	}
	return dr.Queries, r
}

// collect reads campaign events until done or the deadline.
func collect(t *testing.T, ch <-chan CampaignEvent, deadline time.Duration) []CampaignEvent {
	t.Helper()
	var evs []CampaignEvent
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-timer.C:
			t.Fatalf("no done event within %v; got %+v", deadline, evs)
		}
	}
}
