package agent

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// denyEntry is one denylisted query. SQL is a hash of the query text: a
// query whose SQL changed (the usual fix for a query the watchdog stopped)
// is no longer denylisted.
type denyEntry struct {
	SQL    string    `json:"sql_sha1"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// denylist is the watchdog's denylist, persisted in DataDir/denylist.json
// as osquery keeps its own in its database: a restart does not give a
// denylisted query another chance before its day is over.
type denylist struct {
	path string

	mu      sync.Mutex
	entries map[string]denyEntry // query name -> entry
}

func sqlHash(sql string) string {
	sum := sha1.Sum([]byte(sql))
	return hex.EncodeToString(sum[:])
}

// loadDenylist reads the persisted denylist; a missing file is empty, an
// unreadable one is reported and ignored (the watchdog will find heavy
// queries again).
func loadDenylist(path string) (*denylist, error) {
	d := &denylist{path: path, entries: map[string]denyEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("reading denylist: %w", err)
	}
	if err := json.Unmarshal(b, &d.entries); err != nil {
		d.entries = map[string]denyEntry{}
		return d, fmt.Errorf("reading denylist %s: %w", path, err)
	}
	return d, nil
}

// until returns when the query named name with text sql leaves the
// denylist (zero if it is not on it, or if it has expired or changed).
func (d *denylist) until(name, sql string, now time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[name]
	if !ok || e.SQL != sqlHash(sql) || !e.Until.After(now) {
		return time.Time{}
	}
	return e.Until
}

// add denylists a query until the given time and persists the list,
// dropping expired entries.
func (d *denylist) add(name, sql string, until time.Time, reason string, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.entries[name] = denyEntry{SQL: sqlHash(sql), Until: until.UTC(), Reason: reason}
	for n, e := range d.entries {
		if !e.Until.After(now) {
			delete(d.entries, n)
		}
	}
	b, err := json.MarshalIndent(d.entries, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding denylist: %w", err)
	}
	return writeFileAtomic(d.path, b, 0o600)
}
