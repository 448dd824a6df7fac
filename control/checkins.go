package control

import (
	"sync"
	"time"

	"github.com/vigilhq/vigil/state"
)

// checkins keeps every host's latest check-in in memory (what Online and
// Hosts report) and queues it for the state at most once per host and
// interval: a long-polling host checks in on every request, and writing
// each one made the state's single writer rewrite 10,000 rows after
// every live query. The state's last_seen is therefore up to interval
// (plus one flush) behind; replicas reading it judge hosts online with
// OfflineAfter, which is several intervals long.
type checkins struct {
	interval time.Duration
	shard    [shards]checkinShard
}

type checkinShard struct {
	mu      sync.Mutex
	last    map[string]state.Seen // latest check-in
	written map[string]time.Time  // check-in last queued for the state
	queue   map[string]state.Seen // to write at the next flush
}

func newCheckins(interval time.Duration) *checkins {
	c := &checkins{interval: interval}
	for i := range c.shard {
		c.shard[i] = checkinShard{last: map[string]state.Seen{}, written: map[string]time.Time{}, queue: map[string]state.Seen{}}
	}
	return c
}

func (c *checkins) touch(hostID, remote string, now time.Time) {
	sh := &c.shard[lockShard(hostID)]
	sh.mu.Lock()
	sh.last[hostID] = state.Seen{Time: now, RemoteAddr: remote}
	if w, ok := sh.written[hostID]; !ok || now.Sub(w) >= c.interval {
		sh.written[hostID] = now
		sh.queue[hostID] = state.Seen{Time: now, RemoteAddr: remote}
	}
	sh.mu.Unlock()
}

func (c *checkins) lastSeen(hostID string) (time.Time, bool) {
	sh := &c.shard[lockShard(hostID)]
	sh.mu.Lock()
	t, ok := sh.last[hostID]
	sh.mu.Unlock()
	return t.Time, ok
}

// take returns the queued check-ins and empties the queue; all adds
// every check-in newer than the one last queued (at shutdown).
func (c *checkins) take(all bool) map[string]state.Seen {
	out := map[string]state.Seen{}
	for i := range c.shard {
		sh := &c.shard[i]
		sh.mu.Lock()
		if all {
			for id, s := range sh.last {
				if s.Time.After(sh.written[id]) {
					sh.written[id] = s.Time
					sh.queue[id] = s
				}
			}
		}
		for id, s := range sh.queue {
			out[id] = s
		}
		if len(sh.queue) > 0 {
			sh.queue = map[string]state.Seen{}
		}
		sh.mu.Unlock()
	}
	return out
}

// unwritten puts back check-ins whose write failed, so the next flush
// tries again.
func (c *checkins) unwritten(batch map[string]state.Seen) {
	for id, s := range batch {
		sh := &c.shard[lockShard(id)]
		sh.mu.Lock()
		if q, ok := sh.queue[id]; !ok || q.Time.Before(s.Time) {
			sh.queue[id] = s
		}
		sh.mu.Unlock()
	}
}
