package control

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// DefaultLiveQueryPriority bounds how long a live query to held (long-
// polling) hosts keeps the ingest drainer waiting, and its answers'
// acknowledgements (handleDistributedWrite). At 10,000 agents and
// osquery's default log interval every answer was in after 3.7 s with
// the drainer waiting and 7.2-7.5 s without (docs/scaling.md).
const DefaultLiveQueryPriority = 3 * time.Second

// priority is the window in which live queries' answers come before
// draining logs into the store: from a campaign's start (its setup
// included) until every campaign in the window completed, or the window's
// end, whichever is first. Logs keep being accepted (the WAL makes them durable); only
// their way into the store waits.
type priority struct {
	seq    atomic.Int64 // names the window of a campaign being started
	mu     sync.Mutex
	open   map[string]bool // campaigns in the window
	ch     chan struct{}   // closed when the window ends; nil outside one
	opened time.Time       // when ch was made
	timer  *time.Timer
	// deferred are parked holds whose time ran out in the window; they
	// end when it closes (deferEnd).
	deferred []*parkedHold
}

// Yield is ingest's Options.Yield: nil outside a window, else a channel
// closed when it ends.
func (s *Server) Yield() <-chan struct{} {
	p := &s.prio
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch
}

// answerPriority returns the window's channel when the write answers a
// campaign in it, else nil.
func (s *Server) answerPriority(req *osquery.DistributedWriteRequest) <-chan struct{} {
	p := &s.prio
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil {
		return nil
	}
	for id := range req.Queries {
		if p.open[id] {
			return p.ch
		}
	}
	for id := range req.Statuses {
		if p.open[id] {
			return p.ch
		}
	}
	return nil
}

// openPriority opens (or extends) the window for campaign id. A window
// is extended up to twice LiveQueryPriority from its opening, no longer:
// live queries started one after another must not keep the drainer and
// detection waiting for good (each closing lets them take a turn).
func (s *Server) openPriority(id string) {
	d := s.opts.LiveQueryPriority
	if d <= 0 {
		return
	}
	p := &s.prio
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.ch == nil {
		p.ch = make(chan struct{})
		p.open = map[string]bool{}
		p.opened = now
	}
	p.open[id] = true
	if p.timer != nil {
		p.timer.Stop()
	}
	ch := p.ch
	p.timer = time.AfterFunc(min(d, p.opened.Add(2*d).Sub(now)), func() { s.closePriority(ch) })
}

// donePriority takes a completed campaign out of the window; the last one
// out closes it.
func (s *Server) donePriority(id string) {
	p := &s.prio
	p.mu.Lock()
	if !p.open[id] {
		p.mu.Unlock()
		return
	}
	delete(p.open, id)
	ch := p.ch
	empty := len(p.open) == 0
	p.mu.Unlock()
	if empty {
		s.closePriority(ch)
	}
}

// closePriority ends the window ch, unless a newer window replaced it,
// and the holds deferred to its end.
func (s *Server) closePriority(ch chan struct{}) {
	p := &s.prio
	p.mu.Lock()
	if p.ch != ch || ch == nil {
		p.mu.Unlock()
		return
	}
	close(ch)
	p.ch, p.open = nil, nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	deferred := p.deferred
	p.deferred = nil
	p.mu.Unlock()
	// Spread over a moment, so that their agents' next sends are not in
	// step, and on the wake workers, not a goroutine each.
	for _, h := range deferred {
		time.AfterFunc(rand.N(deferredSpread), func() { s.wakes.push(func() { h.run(runEnd) }) })
	}
}

const (
	// deferredSpread is how long the holds deferred to a window's end
	// take to end after it.
	deferredSpread = 500 * time.Millisecond
	// maxDeferral bounds how long past its time a hold may be made to
	// wait: agents give up on a request some 30 s past the wait they
	// asked for (Vigil's agent), and a window may last twice
	// LiveQueryPriority.
	maxDeferral = 10 * time.Second
)

// deferEnd puts off the end of parked hold h until the window closes, and
// reports whether it did: not outside a window, nor once the server is
// closing, nor when the window may last more than maxDeferral from now.
// A query for the host meanwhile still wakes it at once.
func (s *Server) deferEnd(h *parkedHold) bool {
	p := &s.prio
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil || s.closing() || time.Until(p.opened.Add(2*s.opts.LiveQueryPriority)) > maxDeferral {
		return false
	}
	p.deferred = append(p.deferred, h)
	s.stats.holdsExtended.Add(1)
	return true
}
