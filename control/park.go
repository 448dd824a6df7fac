package control

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

// A long-poll hold over HTTP/1.1 is parked when Options.Rejoin is set: its
// connection is taken from net/http (hijacked) and waits with a timer and
// a place in the notifier, not on the two goroutines (handler and
// background read) and the read, write and response buffers net/http
// keeps for a request in progress, about 16 KB of stack and 10 KB of
// heap per agent. Every agent holds a read nearly all the time, so at
// 10,000 agents these were the largest share of the server's memory
// (docs/scaling.md). When a query arrives or the hold ends, the answer is
// written on the connection and it goes back to the HTTP server, which
// serves the agent's next request on it as on a newly accepted one.
//
// A parked connection is not read, so an agent that goes away is noticed
// when its hold ends, not at once; what it was handed then is lost as any
// answer to a vanished agent is.

const (
	// parkLookTimeout bounds a parked hold's look at the state.
	parkLookTimeout = 10 * time.Second
	// parkWriteTimeout bounds writing a parked hold's answer.
	parkWriteTimeout = 30 * time.Second
)

// parkedHold is a distributed/read (or a write or log held as the next read)
// waiting for a live query without a goroutine.
type parkedHold struct {
	s      *Server
	conn   net.Conn
	hostID string
	remote string
	// write: the request was a distributed/write or a log (holdAsRead);
	// its status and headers are out and the answer goes as the one chunk
	// of its body.
	write bool
	path  string
	// close: the client asked to close the connection after the answer.
	close bool

	// registered: p is in the notifier (cleared when a wake takes it out).
	registered atomic.Bool

	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

// How a parked hold is run.
type runMode int

const (
	runParked runMode = iota // just parked: register, then look
	runWoken                 // woken: look, and register only if there is nothing
	runEnd                   // the hold is over: answer
)

// park takes a long-poll hold off net/http when it can and reports
// whether it did; the request is then answered when the hold ends. It
// cannot over HTTP/2 (streams share the connection), HTTP/1.0, or with
// unread body bytes (they would be read as the next request).
func (s *Server) park(w http.ResponseWriter, r *http.Request, h vigil.Host, waitMS int, write bool) bool {
	if s.opts.Rejoin == nil || !h.LongPoll || waitMS <= 0 || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return false
	}
	if n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1)); n != 0 || err != nil {
		return false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false // HTTP/2, or a wrapper that cannot hijack: held as before
	}
	conn.SetDeadline(time.Time{}) // net/http's read and write deadlines
	if rw.Reader.Buffered() > 0 {
		// A pipelined request already read: it is served after the answer.
		conn = &bufferedConn{Conn: conn, r: rw.Reader}
	}
	p := &parkedHold{s: s, conn: conn, hostID: h.ID, remote: r.RemoteAddr, write: write, path: r.URL.Path, close: r.Close}
	if write {
		// The status tells the agent its answers are recorded.
		conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
		head := append(appendStatusLine(nil, http.StatusOK), "Content-Type: application/json\r\n"+osquery.HeaderHeld+": 1\r\nTransfer-Encoding: chunked\r\n\r\n"...)
		if _, err := conn.Write(head); err != nil {
			conn.Close()
			return true
		}
	}
	s.stats.heldReads.Add(1)
	s.stats.parkedHolds.Add(1)
	if !s.parked.add(p) {
		p.finish(nil, nil) // the server is closing
		return true
	}
	p.mu.Lock()
	p.timer = time.AfterFunc(holdFor(waitMS), p.timerEnd)
	p.mu.Unlock()
	p.run(runParked)
	return true
}

// run looks for the host's queries, and answers when there are some, the
// look failed, or the hold is over; else it waits on for the notifier or
// the timer to call it again.
func (p *parkedHold) run(mode runMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	var q map[string]string
	var err error
	if mode != runEnd {
		// A woken hold nearly always finds its query: it looks before
		// registering, sparing the notifier's lock.
		if mode == runWoken {
			q, err = p.look()
		}
		if err == nil && len(q) == 0 {
			// Registered before the look, so that a query started between
			// the look and the wait still wakes it.
			p.s.notify.park(p.hostID, p)
			q, err = p.look()
		}
		if err == nil && len(q) == 0 {
			return
		}
	}
	p.done = true
	p.timer.Stop()
	if p.registered.Load() {
		p.s.notify.unpark(p.hostID, p)
	}
	p.s.parked.remove(p)
	p.finish(q, err)
}

// timerEnd ends the hold when its time is up, unless a live query's
// priority window is open: the hold then lasts until the window closes
// (deferEnd). A host whose hold ends sends what it kept for then, its
// logs above all (Vigil's agent holds until its next log send), and the
// hosts still answering the query need the cores; a host owing an
// answer here was woken already.
func (p *parkedHold) timerEnd() {
	if p.s.deferEnd(p) {
		return
	}
	p.run(runEnd)
}

func (p *parkedHold) look() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), parkLookTimeout)
	defer cancel()
	return p.s.lookPending(ctx, p.hostID)
}

// finish writes the answer and hands the connection back to the server.
func (p *parkedHold) finish(q map[string]string, err error) {
	s := p.s
	s.endHold(p.hostID, p.remote, len(q))
	s.stats.parkedHolds.Add(-1)
	if q == nil {
		q = map[string]string{}
	}
	status := http.StatusOK
	var body []byte
	switch {
	case p.write:
		if err != nil {
			// Too late for an error status: the agent reads at its next poll.
			s.logger.Error("holding a request as the next read", "path", p.path, "host_id", p.hostID, "err", err)
		}
		body, _ = json.Marshal(osquery.DistributedWriteResponse{Queries: q, VigilHeld: true})
	case err != nil:
		s.logger.Error("request failed", "path", p.path, "remote", p.remote, "err", err)
		status = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody{Error: "internal error; see the server log"})
	default:
		body, _ = json.Marshal(osquery.DistributedReadResponse{Queries: q})
	}
	body = append(body, '\n') // as json.Encoder writes it
	var msg []byte
	if p.write {
		msg = strconv.AppendInt(msg, int64(len(body)), 16)
		msg = append(msg, "\r\n"...)
		msg = append(msg, body...)
		msg = append(msg, "\r\n0\r\n\r\n"...)
	} else {
		msg = appendStatusLine(msg, status)
		msg = append(msg, "Content-Type: application/json\r\nContent-Length: "...)
		msg = strconv.AppendInt(msg, int64(len(body)), 10)
		if p.close {
			msg = append(msg, "\r\nConnection: close"...)
		}
		msg = append(msg, "\r\n\r\n"...)
		msg = append(msg, body...)
	}
	p.conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
	if _, err := p.conn.Write(msg); err != nil || p.close || s.closing() {
		p.conn.Close()
		return
	}
	p.conn.SetWriteDeadline(time.Time{})
	// Handed back at once, not after waiting idle (idle.go): a long-
	// polling agent's next request comes at once, and at 10,000 agents
	// waiting first put net/http's one accept loop in the way of every
	// answer to a live query (it took 4.07 and 5.53 s instead of about 2).
	s.rejoinOrClose(p.conn)
}

// waitingSet is what waits off net/http (parked holds, idle
// connections), for Close to end: close marks it closed, so that add
// refuses from then on, and returns what was in it.
type waitingSet[T comparable] struct {
	mu     sync.Mutex
	m      map[T]struct{}
	closed bool
}

func (ws *waitingSet[T]) add(v T) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return false
	}
	if ws.m == nil {
		ws.m = map[T]struct{}{}
	}
	ws.m[v] = struct{}{}
	return true
}

func (ws *waitingSet[T]) remove(v T) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.m, v)
}

func (ws *waitingSet[T]) close() []T {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	all := make([]T, 0, len(ws.m))
	for v := range ws.m {
		all = append(all, v)
	}
	return all
}

// answerParked answers every parked hold (with what is pending, or
// nothing) and closes its connection; none is parked from now on.
func (s *Server) answerParked() {
	var wg sync.WaitGroup
	for _, p := range s.parked.close() {
		wg.Go(func() { p.run(runEnd) })
	}
	wg.Wait()
}

// closing reports whether Close has begun.
func (s *Server) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// wakeQueue runs woken parked holds on a few workers. Started as a
// goroutine each, the holds of 10,000 agents woken by one live query
// filled the scheduler's run queue, and the rest of the server (the
// writer recording answers, the connections reading them) waited behind
// them: answers were recorded up to a second after they came.
type wakeQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      []func()
	head   int
	closed bool
	wg     sync.WaitGroup
}

// start runs n workers until close.
func (wq *wakeQueue) start(n int) {
	wq.cond.L = &wq.mu
	for range n {
		wq.wg.Go(wq.work)
	}
}

// push queues f; after close it runs on a goroutine of its own.
func (wq *wakeQueue) push(f func()) {
	wq.mu.Lock()
	if wq.closed {
		wq.mu.Unlock()
		go f()
		return
	}
	wq.q = append(wq.q, f)
	wq.mu.Unlock()
	wq.cond.Signal()
}

func (wq *wakeQueue) work() {
	wq.mu.Lock()
	for {
		for wq.head == len(wq.q) && !wq.closed {
			wq.cond.Wait()
		}
		if wq.head == len(wq.q) {
			wq.mu.Unlock()
			return
		}
		f := wq.q[wq.head]
		wq.q[wq.head] = nil
		wq.head++
		if wq.head == len(wq.q) {
			wq.q, wq.head = wq.q[:0], 0
		}
		wq.mu.Unlock()
		f()
		wq.mu.Lock()
	}
}

// close runs what is queued and stops the workers.
func (wq *wakeQueue) close() {
	wq.mu.Lock()
	wq.closed = true
	wq.mu.Unlock()
	wq.cond.Broadcast()
	wq.wg.Wait()
}

// bufferedConn reads what net/http had read ahead before the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
