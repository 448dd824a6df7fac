package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil/pki"
)

// The server's listener hands net/http connections whose handshake is
// done: HTTP/2 and HTTP/1.1 clients both get answers, a client that never
// finishes its handshake is dropped after the timeout, and Close ends
// Serve.
func TestHandshakeListener(t *testing.T) {
	bundle, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         serverTLSConfig(bundle.TLSConfig()),
		ReadHeaderTimeout: 300 * time.Millisecond,
		HTTP2:             http2Config(),
	}
	hl := newHandshakeListener(ln, srv.TLSConfig, handshakeTimeout(srv), slog.New(slog.DiscardHandler))
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			io.WriteString(w, r.Proto)
			return
		}
		// As control parks a hold: answer by hand, then hand the
		// connection back for its next request.
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nparked")
		if !hl.rejoin(c) {
			t.Error("rejoin to an open listener refused")
		}
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(hl) }()
	url := "https://" + ln.Addr().String() + "/"

	for _, tc := range []struct {
		h2   bool
		want string
	}{{true, "HTTP/2.0"}, {false, "HTTP/1.1"}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}, ForceAttemptHTTP2: tc.h2}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			t.Fatalf("h2=%v: %v", tc.h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != tc.want {
			t.Errorf("h2=%v: served over %q, want %q", tc.h2, body, tc.want)
		}
	}

	// A hijacked connection handed back is served again: the client's
	// next request goes over it.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}}
	conns := 0
	for _, path := range []string{"/hijack", "/hijack", "/"} {
		req, _ := http.NewRequest("GET", url[:len(url)-1]+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) {
				if !i.Reused {
					conns++
				}
			}}))
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := map[bool]string{true: "parked", false: "HTTP/1.1"}[path == "/hijack"]; string(body) != want {
			t.Errorf("%s: %q, want %q", path, body, want)
		}
	}
	tr.CloseIdleConnections()
	if conns != 1 {
		t.Errorf("%d connections for three requests, two of them hijacked and handed back; want 1", conns)
	}

	// A client that connects and says nothing is closed after the
	// handshake timeout (the read sees EOF or a reset, not our timeout).
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = bufio.NewReader(c).ReadByte()
	c.Close()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("silent client: read %v after %v, want the server to close it", err, time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent client closed after %v, want about the 300ms handshake timeout", d)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := hl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if a, b := net.Pipe(); hl.rejoin(a) {
		t.Error("rejoin to a closed listener accepted")
	} else {
		a.Close()
		b.Close()
	}
}

// Connections handed back wait for Accept without blocking whoever hands
// them back, come out of Accept in order, and those still waiting at
// Close are closed.
func TestHandshakeListenerRejoinBacklog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := newHandshakeListener(ln, &tls.Config{}, time.Second, slog.New(slog.DiscardHandler))
	var peers []net.Conn
	var conns []net.Conn
	for range 3 {
		a, b := net.Pipe()
		conns, peers = append(conns, a), append(peers, b)
		if !hl.rejoin(a) { // no Accept yet: it must not block
			t.Fatal("rejoin to an open listener refused")
		}
	}
	if c, err := hl.Accept(); err != nil || c != conns[0] {
		t.Fatalf("Accept = %v, %v; want the first connection handed back", c, err)
	}
	hl.Close()
	for i, p := range peers[1:] {
		p.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := p.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("connection %d waiting at Close: read %v, want EOF (closed)", i+1, err)
		}
	}
	conns[0].Close()
}
