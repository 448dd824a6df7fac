package control

import (
	"context"
	"maps"
	"slices"
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
	byHost map[string]map[string]string    // host -> campaign -> SQL, not yet handed out
	handed map[string]map[string]struct{}  // host -> campaigns handed out, "sent" not yet written
	marks  map[string]map[string]time.Time // campaign -> host -> handed out at, to mark sent
}

type localCampaign struct {
	deadline time.Time
	hosts    []string
}

func newLocalQueries() *localQueries {
	l := &localQueries{open: map[string]localCampaign{}, kick: make(chan struct{}, 1)}
	for i := range l.shard {
		l.shard[i] = localShard{byHost: map[string]map[string]string{}, handed: map[string]map[string]struct{}{},
			marks: map[string]map[string]time.Time{}}
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
		putNested(sh.byHost, h, campaignID, sql)
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
		putNested(sh.handed, hostID, cid, struct{}{})
		putNested(sh.marks, cid, hostID, now)
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
	deleteNested(sh.byHost, hostID, campaignID)
}

// takeMarks returns the hand-outs made at or before cutoff (all of them
// with all), whose "sent" is to be written, and how many are left.
func (l *localQueries) takeMarks(cutoff time.Time, all bool) (marks map[string][]string, left int) {
	marks = map[string][]string{}
	for i := range l.shard {
		sh := &l.shard[i]
		sh.mu.Lock()
		for cid, hosts := range sh.marks {
			for h, at := range hosts {
				if !all && at.After(cutoff) {
					left++
					continue
				}
				marks[cid] = append(marks[cid], h)
				delete(hosts, h)
			}
			if len(hosts) == 0 {
				delete(sh.marks, cid)
			}
		}
		sh.mu.Unlock()
	}
	return marks, left
}

// written forgets hand-outs whose "sent" is written (or will never be).
func (l *localQueries) written(marks map[string][]string) {
	for cid, hosts := range marks {
		for _, h := range hosts {
			sh := &l.shard[lockShard(h)]
			sh.mu.Lock()
			deleteNested(sh.handed, h, cid)
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
	deleteNested(sh.marks, campaignID, hostID)
	deleteNested(sh.handed, hostID, campaignID)
}

// putNested sets m[k1][k2], making the inner map when needed.
func putNested[V any](m map[string]map[string]V, k1, k2 string, v V) {
	inner := m[k1]
	if inner == nil {
		inner = map[string]V{}
		m[k1] = inner
	}
	inner[k2] = v
}

// deleteNested deletes m[k1][k2], and the inner map once it is empty.
func deleteNested[V any](m map[string]map[string]V, k1, k2 string) {
	if inner := m[k1]; inner != nil {
		delete(inner, k2)
		if len(inner) == 0 {
			delete(m, k1)
		}
	}
}

// markAge is how long a hand-out waits for its answer before "sent" is
// written for it. A long-polling host answers within it, and its answer
// replaces the mark: at 10,000 hosts, writing every mark took the
// state's single writer from the answers for seconds, and writing those
// handed out in the last second (all of them, while a live query's
// answers were still coming in) took a tenth of a second of it.
const markAge = 2 * time.Second

// markLoop writes "sent" for queries handed out from memory and not
// answered within markAge, in batches, until stop; then it writes all.
func (s *Server) markLoop() {
	defer close(s.marksDone)
	left := 0
	for {
		if left == 0 {
			select {
			case <-s.local.kick:
			case <-s.stop:
				s.flushMarks(true)
				return
			}
		}
		select {
		case <-time.After(markAge / 2):
		case <-s.stop:
			s.flushMarks(true)
			return
		}
		left = s.flushMarks(false)
	}
}

// flushMarks writes "sent" for the hand-outs older than markAge (all
// of them with all) and returns how many are left.
func (s *Server) flushMarks(all bool) int {
	marks, left := s.local.takeMarks(s.now().Add(-markAge), all)
	if len(marks) == 0 {
		return left
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
	return left
}

// notifier wakes distributed/read requests held open for a host: those
// holding a goroutine wait on a channel, parked ones are called.
type notifier struct {
	shard [shards]struct {
		mu sync.Mutex
		w  map[string]*waiters
	}
	// run runs a woken parked hold (Server.wakes.push).
	run func(*parkedHold)
}

// waiters are a host's held requests. The entry stays after they are
// gone, until the host's next wake: held counts the host as held here
// between two of its holds.
type waiters struct {
	ch     chan struct{} // closed at the next wake; nil until asked for
	parked []*parkedHold
}

func newNotifier(run func(*parkedHold)) *notifier {
	n := &notifier{run: run}
	for i := range n.shard {
		n.shard[i].w = map[string]*waiters{}
	}
	return n
}

// entry returns the host's waiters, made if missing; the shard is locked.
func (n *notifier) entry(hostID string) (*waiters, func()) {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	w, ok := sh.w[hostID]
	if !ok {
		w = &waiters{}
		sh.w[hostID] = w
	}
	return w, sh.mu.Unlock
}

// channel returns a channel closed at the host's next wake.
func (n *notifier) channel(hostID string) <-chan struct{} {
	w, unlock := n.entry(hostID)
	defer unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// park has p run at the host's next wake.
func (n *notifier) park(hostID string, p *parkedHold) {
	w, unlock := n.entry(hostID)
	defer unlock()
	if !slices.Contains(w.parked, p) {
		w.parked = append(w.parked, p)
	}
	p.registered.Store(true)
}

// unpark forgets p, answered.
func (n *notifier) unpark(hostID string, p *parkedHold) {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if w, ok := sh.w[hostID]; ok {
		w.parked = slices.DeleteFunc(w.parked, func(q *parkedHold) bool { return q == p })
	}
}

// held reports whether a distributed/read of the host is waiting here.
func (n *notifier) held(hostID string) bool {
	sh := &n.shard[lockShard(hostID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.w[hostID]
	return ok
}

// release wakes w's requests, which are no longer in the map. A parked
// request is run: it looks for its queries, and parks again when there
// are none.
func (n *notifier) release(w *waiters) {
	if w.ch != nil {
		close(w.ch)
	}
	for _, p := range w.parked {
		p.registered.Store(false)
		n.run(p)
	}
}

// wakeAll releases every waiting request (they look again and wait on).
func (n *notifier) wakeAll() {
	for i := range n.shard {
		sh := &n.shard[i]
		sh.mu.Lock()
		for id, w := range sh.w {
			delete(sh.w, id)
			n.release(w)
		}
		sh.mu.Unlock()
	}
}

// wake releases every request waiting for the host.
func (n *notifier) wake(hostID string) {
	n.wakeMany([]string{hostID})
}

// wakeMany releases every request waiting for the hosts, taking each
// shard's lock once and starting the parked ones outside it: at 10,000
// held hosts, waking one at a time had the waker contend for the shards
// with the requests it had woken, and the last hosts were woken over a
// second after the first.
func (n *notifier) wakeMany(hostIDs []string) {
	var byShard [shards][]string
	for _, id := range hostIDs {
		i := lockShard(id)
		byShard[i] = append(byShard[i], id)
	}
	var woken []*waiters
	for i := range byShard {
		if len(byShard[i]) == 0 {
			continue
		}
		sh := &n.shard[i]
		sh.mu.Lock()
		for _, id := range byShard[i] {
			if w, ok := sh.w[id]; ok {
				woken = append(woken, w)
				delete(sh.w, id)
			}
		}
		sh.mu.Unlock()
	}
	// Out of the map, w is the waker's alone.
	for _, w := range woken {
		n.release(w)
	}
}

// stateHint knows the hosts that may have a live query waiting in the
// state, so that the distributed/read of every other host does not ask
// it (a read per request that, at 10,000 hosts re-polling together, was
// the state's busiest statement). It is loaded from the state (one query
// for the hosts pending in open campaigns) when the server starts, when
// replica announcements may have been missed, and every stateHintTTL as
// a safety net; between loads a host is added when a query is put in the
// state for it (started here for a host not held here, or announced by a
// replica) and leaves when its read found nothing there. Until the first
// load, and after a failed one, every host asks.
type stateHint struct {
	gen    atomic.Uint64 // bumped by every mark: a look that raced one is not trusted
	all    atomic.Bool   // not loaded: every host asks
	loadMu sync.Mutex
	shard  [shards]struct {
		mu  sync.Mutex
		ask map[string]uint64 // host -> gen of the mark
	}
}

const stateHintTTL = time.Minute

func newStateHint() *stateHint {
	h := &stateHint{}
	h.all.Store(true)
	for i := range h.shard {
		h.shard[i].ask = map[string]uint64{}
	}
	return h
}

// check reports whether the state must be asked for the host, and the
// generation to give cleanIf when the answer is nothing.
func (h *stateHint) check(hostID string) (ask bool, gen uint64) {
	gen = h.gen.Load()
	if h.all.Load() {
		return true, gen
	}
	sh := &h.shard[lockShard(hostID)]
	sh.mu.Lock()
	_, ask = sh.ask[hostID]
	sh.mu.Unlock()
	return ask, gen
}

// cleanIf records that the state had nothing for the host, unless it was
// marked since gen was read (before the state was asked).
func (h *stateHint) cleanIf(hostID string, gen uint64) {
	sh := &h.shard[lockShard(hostID)]
	sh.mu.Lock()
	if g, ok := sh.ask[hostID]; ok && g <= gen {
		delete(sh.ask, hostID)
	}
	sh.mu.Unlock()
}

// dirty says the state may hold queries for the hosts.
func (h *stateHint) dirty(hostIDs ...string) {
	g := h.gen.Add(1)
	for _, id := range hostIDs {
		sh := &h.shard[lockShard(id)]
		sh.mu.Lock()
		sh.ask[id] = g
		sh.mu.Unlock()
	}
}

// load replaces what the hint knows with the hosts pending in the state
// (list), keeping the marks made while list ran. On error every host
// asks until a load succeeds.
func (h *stateHint) load(ctx context.Context, list func(context.Context) ([]string, error)) error {
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	g0 := h.gen.Add(1)
	ids, err := list(ctx)
	if err != nil {
		h.all.Store(true)
		return err
	}
	var fresh [shards]map[string]uint64
	for i := range fresh {
		fresh[i] = map[string]uint64{}
	}
	for _, id := range ids {
		fresh[lockShard(id)][id] = g0
	}
	for i := range h.shard {
		sh := &h.shard[i]
		sh.mu.Lock()
		for id, g := range sh.ask {
			if g > g0 {
				fresh[i][id] = g
			}
		}
		sh.ask = fresh[i]
		sh.mu.Unlock()
	}
	h.all.Store(false)
	return nil
}
