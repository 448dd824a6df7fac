package control

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// The per-host maps of this file are split in shards by host id. A live
// query to 10,000 long-polling hosts wakes them all at once, and each
// then takes, checks in and waits again within the same second; behind
// one mutex they formed a convoy (Go's mutex hands over in FIFO order
// once waiters queue, so every hand-over waited for a goroutine to be
// scheduled among thousands).
const shards = 64

func lockShard(id string) uint32 {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h % shards
}

// localQueries holds, per host, the live queries this server started for
// hosts whose distributed/read was held here when the query started. The
// woken read answers from memory instead of claiming from the state (a
// read, then a write queued behind every other write, per host); "sent"
// is recorded afterwards in batches. Hosts held by another replica, or
// polling, get their queries by the state's claim as before.
type localQueries struct {
	openMu sync.RWMutex
	open   map[string]localCampaign // campaigns with entries below
	shard  [shards]localShard
	kick   chan struct{}
}

type localShard struct {
	mu     sync.Mutex
	byHost map[string]map[string]string   // host -> campaign -> SQL, not yet handed out
	handed map[string]map[string]struct{} // host -> campaigns handed out, "sent" not yet written
	marks  map[string]map[string]struct{} // campaign -> hosts to mark sent
}

type localCampaign struct {
	deadline time.Time
	hosts    []string
}

func newLocalQueries() *localQueries {
	l := &localQueries{open: map[string]localCampaign{}, kick: make(chan struct{}, 1)}
	for i := range l.shard {
		l.shard[i] = localShard{byHost: map[string]map[string]string{}, handed: map[string]map[string]struct{}{},
			marks: map[string]map[string]struct{}{}}
	}
	return l
}

// add keeps a campaign's query for the given hosts.
func (l *localQueries) add(campaignID, sql string, deadline time.Time, hosts []string) {
	if len(hosts) == 0 {
		return
	}
	l.openMu.Lock()
	l.open[campaignID] = localCampaign{deadline: deadline, hosts: hosts}
	l.openMu.Unlock()
	for _, h := range hosts {
		sh := &l.shard[lockShard(h)]
		sh.mu.Lock()
		m := sh.byHost[h]
		if m == nil {
			m = map[string]string{}
			sh.byHost[h] = m
		}
		m[campaignID] = sql
		sh.mu.Unlock()
	}
}

// take hands out the host's queries of campaigns still running at now
// and queues them to be marked sent.
func (l *localQueries) take(hostID string, now time.Time) map[string]string {
	sh := &l.shard[lockShard(hostID)]
	sh.mu.Lock()
	m := sh.byHost[hostID]
	if m == nil {
		sh.mu.Unlock()
		return nil
	}
	delete(sh.byHost, hostID)
	var out map[string]string
	for cid, sql := range m {
		l.openMu.RLock()
		c, ok := l.open[cid]
		l.openMu.RUnlock()
		if !ok || !c.deadline.After(now) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[cid] = sql
		h := sh.handed[hostID]
		if h == nil {
			h = map[string]struct{}{}
			sh.handed[hostID] = h
		}
		h[cid] = struct{}{}
		mk := sh.marks[cid]
		if mk == nil {
			mk = map[string]struct{}{}
			sh.marks[cid] = mk
		}
		mk[hostID] = struct{}{}
	}
	sh.mu.Unlock()
	if out != nil {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return out
}

// drop removes, from queries claimed in the state, those already handed
// out from memory whose "sent" is not yet written (so still pending there).
func (l *localQueries) drop(hostID string, q map[string]string) map[string]string {
	sh := &l.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h := sh.handed[hostID]
	if len(h) == 0 || len(q) == 0 {
		return q
	}
	q = maps.Clone(q)
	for cid := range h {
		delete(q, cid)
	}
	return q
}

// forget drops a campaign that ended (or whose host answered elsewhere):
// what was not handed out is not any more.
func (l *localQueries) forget(campaignID string) {
	l.openMu.Lock()
	c, ok := l.open[campaignID]
	delete(l.open, campaignID)
	l.openMu.Unlock()
	if !ok {
		return
	}
	for _, h := range c.hosts {
		l.forgetHost(campaignID, h)
	}
}

// forgetHost drops one host's entry of a campaign (it answered through
// another replica).
func (l *localQueries) forgetHost(campaignID, hostID string) {
	sh := &l.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if m := sh.byHost[hostID]; m != nil {
		delete(m, campaignID)
		if len(m) == 0 {
			delete(sh.byHost, hostID)
		}
	}
}

// takeMarks returns the hand-outs whose "sent" is to be written.
func (l *localQueries) takeMarks() map[string][]string {
	out := map[string][]string{}
	for i := range l.shard {
		sh := &l.shard[i]
		sh.mu.Lock()
		for cid, hosts := range sh.marks {
			for h := range hosts {
				out[cid] = append(out[cid], h)
			}
		}
		if len(sh.marks) > 0 {
			sh.marks = map[string]map[string]struct{}{}
		}
		sh.mu.Unlock()
	}
	return out
}

// written forgets hand-outs whose "sent" is written (or will never be).
func (l *localQueries) written(marks map[string][]string) {
	for cid, hosts := range marks {
		for _, h := range hosts {
			sh := &l.shard[lockShard(h)]
			sh.mu.Lock()
			if m := sh.handed[h]; m != nil {
				delete(m, cid)
				if len(m) == 0 {
					delete(sh.handed, h)
				}
			}
			sh.mu.Unlock()
		}
	}
}

// answered forgets a hand-out whose answer came: its "sent" need not be
// written (the answer replaced it in the state).
func (l *localQueries) answered(campaignID, hostID string) {
	sh := &l.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if mk := sh.marks[campaignID]; mk != nil {
		delete(mk, hostID)
		if len(mk) == 0 {
			delete(sh.marks, campaignID)
		}
	}
	if m := sh.handed[hostID]; m != nil {
		delete(m, campaignID)
		if len(m) == 0 {
			delete(sh.handed, hostID)
		}
	}
}

// markInterval is how long hand-outs gather before one write marks them
// sent. Long-polling hosts answer within it, and their answer replaces
// the mark: at 10,000 hosts, writing every mark took the state's single
// writer from the answers for seconds.
const markInterval = time.Second

// markLoop writes "sent" for queries handed out from memory, one
// statement per campaign and batch, until stop.
func (s *Server) markLoop() {
	defer close(s.marksDone)
	for {
		select {
		case <-s.local.kick:
		case <-s.stop:
			s.flushMarks()
			return
		}
		select {
		case <-time.After(markInterval):
		case <-s.stop:
		}
		s.flushMarks()
	}
}

func (s *Server) flushMarks() {
	marks := s.local.takeMarks()
	if len(marks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := s.now()
	for cid, hosts := range marks {
		if err := s.db.MarkSent(ctx, cid, hosts, now); err != nil {
			// The hosts got the query; their status stays pending until
			// they answer or time out, which the summary counts alike.
			s.logger.Error("recording live queries as sent", "campaign", cid, "hosts", len(hosts), "err", err)
		}
	}
	s.local.written(marks)
}

// notifier wakes distributed/read requests held open for a host.
type notifier struct {
	shard [shards]struct {
		mu sync.Mutex
		ch map[string]chan struct{}
	}
}

func newNotifier() *notifier {
	n := &notifier{}
	for i := range n.shard {
		n.shard[i].ch = map[string]chan struct{}{}
	}
	return n
}

// channel returns a channel closed at the host's next wake.
func (n *notifier) channel(hostID string) <-chan struct{} {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c, ok := sh.ch[hostID]
	if !ok {
		c = make(chan struct{})
		sh.ch[hostID] = c
	}
	return c
}

// held reports whether a distributed/read of the host is waiting here.
func (n *notifier) held(hostID string) bool {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.ch[hostID]
	return ok
}

// wakeAll releases every waiting request (they look again and wait on).
func (n *notifier) wakeAll() {
	for i := range n.shard {
		sh := &n.shard[i]
		sh.mu.Lock()
		for id, c := range sh.ch {
			close(c)
			delete(sh.ch, id)
		}
		sh.mu.Unlock()
	}
}

// wake releases every request waiting for the host.
func (n *notifier) wake(hostID string) {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c, ok := sh.ch[hostID]; ok {
		close(c)
		delete(sh.ch, hostID)
	}
}

// stateHint remembers hosts known to have no live query waiting in the
// state, so that their distributed/read does not ask it (a read per
// request that, at 10,000 hosts re-polling together, was the state's
// busiest statement). A host leaves the set when a query is put in the
// state for it (started here for a host not held here, or announced by a
// replica), and every host leaves it at start, when announcements may
// have been missed, and every stateHintTTL as a safety net.
type stateHint struct {
	gen   atomic.Uint64 // bumped by every dirty: a check that raced one is not trusted
	shard [shards]struct {
		mu    sync.Mutex
		clean map[string]struct{}
	}
}

const stateHintTTL = time.Minute

func newStateHint() *stateHint {
	h := &stateHint{}
	for i := range h.shard {
		h.shard[i].clean = map[string]struct{}{}
	}
	return h
}

// check reports whether the state must be asked for the host, and the
// generation to give cleanIf when the answer is nothing.
func (h *stateHint) check(hostID string) (ask bool, gen uint64) {
	gen = h.gen.Load()
	sh := &h.shard[lockShard(hostID)]
	sh.mu.Lock()
	_, clean := sh.clean[hostID]
	sh.mu.Unlock()
	return !clean, gen
}

// cleanIf records that the state had nothing for the host, unless
// something was made dirty since gen was read (before the state was
// asked).
func (h *stateHint) cleanIf(hostID string, gen uint64) {
	sh := &h.shard[lockShard(hostID)]
	sh.mu.Lock()
	if h.gen.Load() == gen {
		sh.clean[hostID] = struct{}{}
	}
	sh.mu.Unlock()
}

// dirty says the state may hold queries for the hosts.
func (h *stateHint) dirty(hostIDs ...string) {
	h.gen.Add(1)
	for _, id := range hostIDs {
		sh := &h.shard[lockShard(id)]
		sh.mu.Lock()
		delete(sh.clean, id)
		sh.mu.Unlock()
	}
}

// dirtyAll says the state may hold queries for any host.
func (h *stateHint) dirtyAll() {
	h.gen.Add(1)
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.Lock()
		clear(sh.clean)
		sh.mu.Unlock()
	}
}
