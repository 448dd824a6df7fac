package state

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil"
)

// Node keys are looked up on every agent request; at 10,000 agents the
// SQLite query was the largest cost of a distributed/write after TLS. The
// cache is dropped whole by any change to hosts or node keys made through
// this DB (enroll, revoke, remove), so those take effect at once here. A
// change made by another replica (PostgreSQL) is seen within
// keyCacheTTLShared.
const (
	keyCacheTTL       = time.Minute
	keyCacheTTLShared = 2 * time.Second
	keyCacheMax       = 200_000
)

type keyCache struct {
	gen atomic.Uint64 // bumped by every host or node-key change
	mu  sync.RWMutex
	m   map[string]cachedHost // node key hash -> host
}

type cachedHost struct {
	host vigil.Host
	gen  uint64
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
	c.mu.RUnlock()
	if !ok || e.gen != c.gen.Load() || time.Since(e.at) > db.keyCacheTTL() {
		return vigil.Host{}, false
	}
	return e.host, true
}

// cacheHost remembers a lookup made when the generation was gen (read
// before the query, so a change committed meanwhile invalidates it).
func (db *DB) cacheHost(hash string, h vigil.Host, gen uint64) {
	c := &db.keys
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= keyCacheMax {
		c.m = map[string]cachedHost{}
	}
	c.m[hash] = cachedHost{host: h, gen: gen, at: time.Now()}
}

// hostsChanged invalidates every cached node key.
func (db *DB) hostsChanged() {
	db.keys.gen.Add(1)
}
