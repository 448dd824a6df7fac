// Package event owns the agent's real-time event sources (Linux audit
// netlink, the netlink process connector, fanotify and inotify) and the
// bounded Buffer that holds their rows until the event tables
// (process_events, ...) are queried. Rows use osquery's column names.
//
// Only the agent runtime (package agent) and cmd/vigil-agent import it; the
// table engine sees it through table.EventSource.
package event

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Defaults as osquery's --events_max and --events_expiry.
const (
	DefaultMax    = 50000
	DefaultExpiry = 3600 * time.Second
)

// BufferOptions bounds a Buffer.
type BufferOptions struct {
	// Max is the number of rows kept per table; when full the oldest row is
	// dropped and counted (osquery's events_max). 0 means DefaultMax.
	Max int
	// Expiry is the age after which rows are removed. As in osquery it is
	// applied when the table is queried, so unqueried rows wait (bounded by
	// Max). 0 means DefaultExpiry; negative disables expiry.
	Expiry time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TableStats counts what happened to one table's rows.
type TableStats struct {
	Table    string `json:"table"`
	Added    uint64 `json:"added"`    // rows accepted
	Dropped  uint64 `json:"dropped"`  // oldest rows pushed out by Max
	Expired  uint64 `json:"expired"`  // rows removed by Expiry
	Buffered int    `json:"buffered"` // rows held now
}

type entry struct {
	seq uint64
	at  time.Time
	row map[string]string
}

type tableBuf struct {
	rows  []entry // live rows are rows[start:], in seq order
	start int
	stats TableStats
}

// Buffer holds event rows per table, bounded by count and age, and hands
// them to the table engine with a cursor so that each consumer sees each row
// once. It implements table.EventSource. It is safe for concurrent use.
type Buffer struct {
	max    int
	expiry time.Duration
	now    func() time.Time

	mu     sync.Mutex
	seq    uint64
	tables map[string]*tableBuf
}

// NewBuffer returns an empty Buffer.
func NewBuffer(opts BufferOptions) *Buffer {
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Expiry == 0 {
		opts.Expiry = DefaultExpiry
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Buffer{max: opts.Max, expiry: opts.Expiry, now: opts.Now, tables: map[string]*tableBuf{}}
}

// Add stores row for table. It sets "eid" (a per-buffer increasing id, as
// osquery's event id) and "time" when the source did not. The row must not
// be modified by the caller afterwards.
func (b *Buffer) Add(table string, row map[string]string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	row["eid"] = formatEID(b.seq)
	if row["time"] == "" {
		row["time"] = strconv.FormatInt(now.Unix(), 10)
	}
	t := b.tables[table]
	if t == nil {
		t = &tableBuf{stats: TableStats{Table: table}}
		b.tables[table] = t
	}
	t.stats.Added++
	t.rows = append(t.rows, entry{seq: b.seq, at: now, row: row})
	t.trim(b.max)
	t.compact()
}

// SetLimits changes the buffer's bounds at runtime (a config's events_max
// and events_expiry options), with NewBuffer's meaning for zero and
// negative values. Rows over the new max are dropped at once, oldest
// first, and counted as Dropped, so that a lowered max frees memory now
// rather than at the next Add; the new expiry applies from the next Rows
// call, where expiry is always applied.
func (b *Buffer) SetLimits(max int, expiry time.Duration) {
	if max <= 0 {
		max = DefaultMax
	}
	if expiry == 0 {
		expiry = DefaultExpiry
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.max, b.expiry = max, expiry
	for _, t := range b.tables {
		t.trim(max)
		if cap(t.rows) > 2*max {
			// A much lower max: give the large array back.
			t.rows = slices.Clone(t.rows[t.start:])
			t.start = 0
		}
		t.compact()
	}
}

// Limits returns the bounds in force: the max rows per table and the
// expiry (negative: none).
func (b *Buffer) Limits() (max int, expiry time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.max, b.expiry
}

// trim drops the oldest live rows over max, counting them.
func (t *tableBuf) trim(max int) {
	if n := len(t.rows) - t.start; n > max {
		drop := n - max
		for i := t.start; i < t.start+drop; i++ {
			t.rows[i] = entry{}
		}
		t.start += drop
		t.stats.Dropped += uint64(drop)
	}
}

// compact reclaims the dropped prefix once it is at least half the slice,
// so that memory stays proportional to Max.
func (t *tableBuf) compact() {
	if t.start > 0 && t.start >= len(t.rows)/2 {
		n := copy(t.rows, t.rows[t.start:])
		clear(t.rows[n:])
		t.rows = t.rows[:n]
		t.start = 0
	}
}

// Rows returns the rows of table added after cursor `after` (0 = all held
// rows) and the cursor to pass next time. Rows older than the expiry are
// removed first, as osquery expires on query. The returned maps are shared:
// callers must not modify them.
func (b *Buffer) Rows(table string, after uint64) (rows []map[string]string, last uint64) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	last = after
	t := b.tables[table]
	if t == nil {
		return nil, last
	}
	if b.expiry > 0 {
		cut := now.Add(-b.expiry)
		i := t.start
		for i < len(t.rows) && t.rows[i].at.Before(cut) {
			t.rows[i] = entry{}
			i++
		}
		t.stats.Expired += uint64(i - t.start)
		t.start = i
		t.compact()
	}
	live := t.rows[t.start:]
	// Rows are in seq order: binary search the first one after the cursor.
	k := sort.Search(len(live), func(i int) bool { return live[i].seq > after })
	if k < len(live) {
		rows = make([]map[string]string, 0, len(live)-k)
		for _, e := range live[k:] {
			rows = append(rows, e.row)
		}
		last = live[len(live)-1].seq
	}
	return rows, last
}

// Stats returns the counters of every table seen, sorted by table name.
func (b *Buffer) Stats() []TableStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]TableStats, 0, len(b.tables))
	for _, t := range b.tables {
		s := t.stats
		s.Buffered = len(t.rows) - t.start
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out
}

// formatEID formats an event id as osquery does: ten digits, zero padded.
func formatEID(seq uint64) string { return fmt.Sprintf("%010d", seq) }
