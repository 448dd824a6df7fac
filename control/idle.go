package control

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// Between two requests an HTTP/1.1 connection costs net/http a goroutine
// (8 KB of stack) and its read and write buffers (4 KB each) for as long
// as it stays open, and an osquery agent keeps its connection and sends a
// request every few seconds (logs every logger_tls_period, a distributed
// read every distributed_interval). With 10,000 plainly polling agents
// these were the largest share of the server's memory (docs/scaling.md).
//
// With Options.Rejoin set, a finished request of the osquery API over
// HTTP/1.1 (but a long-polling agent's, whose next request, a hold, comes
// at once) has its response written here and its connection taken from
// net/http (hijacked) until the agent sends its next request: it waits
// on a small goroutine, with no buffer, and then goes back to the HTTP
// server, which serves it as a newly accepted connection.

// DefaultIdleTimeout closes a connection idle this long off net/http
// (net/http's server, as cmd/vigil configures it, has none; a peer that
// vanished without a word would otherwise be kept for ever). Agents send
// something every few seconds to a minute.
const DefaultIdleTimeout = 15 * time.Minute

// idleWriter holds a response until the handler returns, unless the
// handler takes the connection (a parked hold) or flushes (a held
// write): then everything goes to the real writer from there on.
type idleWriter struct {
	http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
	passed bool
	// stay: the connection stays with net/http (a long-polling agent,
	// whose next request comes at once).
	stay bool
}

func (w *idleWriter) Header() http.Header {
	if w.passed {
		return w.ResponseWriter.Header()
	}
	return w.header
}

func (w *idleWriter) WriteHeader(code int) {
	if w.passed {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status == 0 {
		w.status = code
	}
}

func (w *idleWriter) Write(b []byte) (int, error) {
	if w.passed {
		return w.ResponseWriter.Write(b)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// pass sends what is held to the real writer and stops holding.
func (w *idleWriter) pass() {
	if w.passed {
		return
	}
	w.passed = true
	h := w.ResponseWriter.Header()
	for k, v := range w.header {
		h[k] = v
	}
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
	if w.body.Len() > 0 {
		w.ResponseWriter.Write(w.body.Bytes())
	}
}

func (w *idleWriter) FlushError() error {
	w.pass()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *idleWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.passed = true // nothing was written: the hijacker writes its own
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController the real writer (deadlines).
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// idleAfter wraps the osquery API so that its HTTP/1.1 connections wait
// off net/http between requests.
func (s *Server) idleAfter(next http.Handler) http.Handler {
	if s.opts.Rejoin == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close {
			next.ServeHTTP(w, r)
			return
		}
		iw := &idleWriter{ResponseWriter: w, header: http.Header{}}
		next.ServeHTTP(iw, r)
		if iw.passed || !iw.stay && s.handOff(w, r, iw) {
			return
		}
		iw.pass()
	})
}

// handOff writes the held response on the hijacked connection and lets
// the connection wait for the next request; false when it cannot (the
// response is then net/http's to send).
func (s *Server) handOff(w http.ResponseWriter, r *http.Request, iw *idleWriter) bool {
	status := iw.status
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status == http.StatusNoContent || status == http.StatusNotModified || s.closing() {
		return false
	}
	// Unread body bytes would be read as the next request; net/http
	// deals with them (or closes).
	if n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1)); n != 0 || err != nil {
		return false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	conn.SetDeadline(time.Time{}) // net/http's
	head := bytes.NewBuffer(appendStatusLine(make([]byte, 0, 256), status))
	iw.header.Del("Transfer-Encoding")
	iw.header.Del("Connection")
	iw.header.Del("Date")
	iw.header.Set("Content-Length", strconv.Itoa(iw.body.Len()))
	iw.header.Write(head)
	head.WriteString("\r\n")
	conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
	if _, err := (&net.Buffers{head.Bytes(), iw.body.Bytes()}).WriteTo(conn); err != nil {
		conn.Close()
		return true
	}
	conn.SetWriteDeadline(time.Time{})
	// Bytes of a pipelined request are in rw.Reader even when TLS had
	// decrypted them and net/http had not read them: once a body is read,
	// net/http reads one byte ahead, and hands it over at the hijack.
	if rw.Reader.Buffered() > 0 {
		// A pipelined request already read: serve it now.
		s.rejoinOrClose(&bufferedConn{Conn: conn, r: rw.Reader})
		return true
	}
	s.waitIdle(conn)
	return true
}

// appendStatusLine appends an HTTP/1.1 response's status line and its
// Date header, for a response written on a hijacked connection; the
// caller adds the other headers and the blank line.
func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n"...)
}

func (s *Server) rejoinOrClose(c net.Conn) {
	if !s.opts.Rejoin(c) {
		c.Close()
	}
}

// waitIdle hands c back once its next request starts to come in, or
// closes it after Options.IdleTimeout or at Close. Without a way to wait for its
// socket to be readable, it hands it back at once.
func (s *Server) waitIdle(c net.Conn) {
	c = unwrapRead(c)
	tc, ok := c.(*tls.Conn)
	if !ok {
		s.rejoinOrClose(c)
		return
	}
	raw, ok := tc.NetConn().(syscall.Conn)
	if !ok {
		s.rejoinOrClose(c)
		return
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		s.rejoinOrClose(c)
		return
	}
	// Before add: Close's deadline, set once c is in the set, must win.
	tc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
	if !s.idle.add(c) {
		c.Close() // closing
		return
	}
	s.stats.idleConns.Add(1)
	go func() {
		defer s.stats.idleConns.Add(-1)
		err := rc.Read(readable)
		s.idle.remove(c)
		tc.SetReadDeadline(time.Time{})
		if err != nil || s.closing() {
			c.Close() // idle too long, or the server is closing
			return
		}
		s.rejoinOrClose(c)
	}()
}

// closeIdle wakes every connection waiting in waitIdle (its deadline
// passes), which then closes; none waits from now on.
func (s *Server) closeIdle() {
	for _, c := range s.idle.close() {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}

// unwrapRead returns the connection under the read-ahead wrappers that
// have nothing left to give: a connection once served with bytes read
// ahead can wait idle again once they are read.
func unwrapRead(c net.Conn) net.Conn {
	for {
		switch x := c.(type) {
		case *bufferedConn:
			if x.r.Buffered() > 0 {
				return c
			}
			c = x.Conn
		default:
			return c
		}
	}
}
