package state

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil"
)

// Node keys are looked up on every agent request; at 10,000 agents the
// SQLite query was the largest cost of a distributed/write after TLS. A
// change to a host or its node keys made through this DB (re-enroll,
// revoke, remove) drops that host's cached keys, so it takes effect at
// once here; enrolling a new host drops nothing (no cached key can name
// a host that did not exist) and caches its new key. Dropping the whole
// cache at every enrollment made each enrollment cost every other agent
// a lookup: 10,000 agents enrolling met a cold cache until the last one
// was in. A change made by another replica (PostgreSQL) is seen within
// keyCacheTTLShared.
const (
	keyCacheTTL       = time.Minute
	keyCacheTTLShared = 2 * time.Second
	keyCacheMax       = 200_000
)

type keyCache struct {
	gen     atomic.Uint64 // bumped by every host or node-key change
	mu      sync.RWMutex
	m       map[string]cachedHost // node key hash -> host
	changed map[string]uint64     // host id -> gen of its last change
	floor   uint64                // entries looked up before it are stale (changed was reset)
}

type cachedHost struct {
	host vigil.Host
	gen  uint64 // gen when the lookup started
	at   time.Time
}

func (db *DB) keyCacheTTL() time.Duration {
	if db.dialect == Postgres {
		return keyCacheTTLShared
	}
	return keyCacheTTL
}

// cachedHostByHash returns the cached host of a node key hash.
func (db *DB) cachedHostByHash(hash string) (vigil.Host, bool) {
	c := &db.keys
	c.mu.RLock()
	e, ok := c.m[hash]
	fresh := ok && e.gen >= c.floor && e.gen >= c.changed[e.host.ID]
	c.mu.RUnlock()
	if !fresh || time.Since(e.at) > db.keyCacheTTL() {
		return vigil.Host{}, false
	}
	return e.host, true
}

// cacheHost remembers a lookup started when the generation was gen (read
// before the query, so a change committed meanwhile makes it stale).
func (db *DB) cacheHost(hash string, h vigil.Host, gen uint64) {
	c := &db.keys
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= keyCacheMax {
		c.m = map[string]cachedHost{}
	}
	c.m[hash] = cachedHost{host: h, gen: gen, at: time.Now()}
}

// hostChanged makes every cached node key of the host stale. It is
// called after the change is committed (or failed: the outcome of a
// failed commit is unknown), so a lookup that may have read the old
// state started before the generation it records.
func (db *DB) hostChanged(hostID string) {
	c := &db.keys
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gen.Add(1)
	if c.changed == nil || len(c.changed) >= keyCacheMax {
		// Forgetting which hosts changed: everything cached before is stale.
		c.changed, c.floor = map[string]uint64{}, g
	}
	c.changed[hostID] = g
}
