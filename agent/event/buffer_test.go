package event

import (
	"fmt"
	"testing"
	"time"
)

func TestBufferCursor(t *testing.T) {
	b := NewBuffer(BufferOptions{Max: 100})
	for i := 0; i < 5; i++ {
		b.Add("process_events", map[string]string{"pid": fmt.Sprint(i)})
	}
	b.Add("socket_events", map[string]string{"pid": "s"})
	rows, last := b.Rows("process_events", 0)
	if len(rows) != 5 {
		t.Fatalf("first read: %d rows, want 5", len(rows))
	}
	for i, r := range rows {
		if r["pid"] != fmt.Sprint(i) || r["eid"] == "" || r["time"] == "" {
			t.Fatalf("row %d = %v", i, r)
		}
	}
	again, last2 := b.Rows("process_events", last)
	if len(again) != 0 || last2 != last {
		t.Fatalf("read after cursor: %d rows, cursor %d->%d", len(again), last, last2)
	}
	b.Add("process_events", map[string]string{"pid": "new"})
	more, last3 := b.Rows("process_events", last)
	if len(more) != 1 || more[0]["pid"] != "new" || last3 <= last {
		t.Fatalf("after one add: %v cursor %d", more, last3)
	}
	// Another consumer starting at 0 still sees every held row.
	all, _ := b.Rows("process_events", 0)
	if len(all) != 6 {
		t.Fatalf("fresh consumer: %d rows, want 6", len(all))
	}
	if s, _ := b.Rows("socket_events", 0); len(s) != 1 {
		t.Fatalf("socket_events: %d rows", len(s))
	}
	if r, l := b.Rows("nothing", 7); r != nil || l != 7 {
		t.Fatalf("unknown table: %v %d", r, l)
	}
	// eids are unique and increasing.
	prev := ""
	for _, r := range all {
		if r["eid"] <= prev {
			t.Fatalf("eid %q not after %q", r["eid"], prev)
		}
		prev = r["eid"]
	}
}

func TestBufferMaxDropsOldest(t *testing.T) {
	b := NewBuffer(BufferOptions{Max: 10})
	for i := 0; i < 35; i++ {
		b.Add("t", map[string]string{"n": fmt.Sprint(i)})
	}
	rows, _ := b.Rows("t", 0)
	if len(rows) != 10 {
		t.Fatalf("%d rows, want 10", len(rows))
	}
	if rows[0]["n"] != "25" || rows[9]["n"] != "34" {
		t.Fatalf("kept %s..%s, want 25..34", rows[0]["n"], rows[9]["n"])
	}
	st := b.Stats()
	if len(st) != 1 || st[0].Dropped != 25 || st[0].Added != 35 || st[0].Buffered != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBufferExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBuffer(BufferOptions{Expiry: time.Minute, Now: func() time.Time { return now }})
	b.Add("t", map[string]string{"n": "old"})
	now = now.Add(50 * time.Second)
	b.Add("t", map[string]string{"n": "young"})
	now = now.Add(20 * time.Second) // old is 70 s, young 20 s
	rows, _ := b.Rows("t", 0)
	if len(rows) != 1 || rows[0]["n"] != "young" {
		t.Fatalf("rows %v, want only young", rows)
	}
	if st := b.Stats(); st[0].Expired != 1 {
		t.Fatalf("expired %d, want 1", st[0].Expired)
	}
	// Expiry disabled keeps everything.
	b2 := NewBuffer(BufferOptions{Expiry: -1, Now: func() time.Time { return now }})
	b2.Add("t", map[string]string{})
	now = now.Add(1000 * time.Hour)
	if rows, _ := b2.Rows("t", 0); len(rows) != 1 {
		t.Fatalf("expiry disabled: %d rows", len(rows))
	}
}

func BenchmarkBufferAdd(b *testing.B) {
	buf := NewBuffer(BufferOptions{})
	for i := 0; i < b.N; i++ {
		buf.Add("process_events", map[string]string{"pid": "1"})
	}
}

// TestBufferSetLimits: a lower max drops the oldest rows at once (counted
// as Dropped, cursors stay valid), later adds obey the new max, a new
// expiry applies at the next read, and zero/negative values mean what they
// mean for NewBuffer.
func TestBufferSetLimits(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBuffer(BufferOptions{Max: 100, Expiry: time.Hour, Now: func() time.Time { return now }})
	for i := 0; i < 50; i++ {
		b.Add("a", map[string]string{"n": fmt.Sprint(i)})
	}
	for i := 0; i < 3; i++ {
		b.Add("b", map[string]string{"n": fmt.Sprint(i)})
	}
	// A consumer that read the first 20 rows of "a".
	first, _ := b.Rows("a", 0)
	cursor := uint64(0)
	for _, r := range first[:20] {
		fmt.Sscan(r["eid"], &cursor)
	}

	b.SetLimits(10, time.Hour)
	if m, e := b.Limits(); m != 10 || e != time.Hour {
		t.Fatalf("limits %d %v, want 10 1h", m, e)
	}
	// Dropped at once, before any Add or Rows.
	st := b.Stats()
	if len(st) != 2 || st[0].Table != "a" || st[0].Dropped != 40 || st[0].Buffered != 10 || st[0].Added != 50 {
		t.Fatalf("stats of a after SetLimits(10): %+v", st)
	}
	if st[1].Dropped != 0 || st[1].Buffered != 3 {
		t.Fatalf("table under the new max changed: %+v", st[1])
	}
	rows, _ := b.Rows("a", cursor)
	if len(rows) != 10 || rows[0]["n"] != "40" || rows[9]["n"] != "49" {
		t.Fatalf("after SetLimits(10) a consumer at row 20 reads %d rows (%v..), want 40..49", len(rows), rows[0]["n"])
	}
	// Later adds obey the new max.
	for i := 50; i < 55; i++ {
		b.Add("a", map[string]string{"n": fmt.Sprint(i)})
	}
	if st := b.Stats(); st[0].Buffered != 10 || st[0].Dropped != 45 {
		t.Fatalf("after 5 more adds: %+v, want 10 buffered, 45 dropped", st[0])
	}
	// A higher max keeps what is held and lets it grow.
	b.SetLimits(1000, time.Hour)
	for i := 55; i < 155; i++ {
		b.Add("a", map[string]string{"n": fmt.Sprint(i)})
	}
	if st := b.Stats(); st[0].Buffered != 110 || st[0].Dropped != 45 {
		t.Fatalf("after raising max: %+v, want 110 buffered, 45 dropped", st[0])
	}

	// Expiry: rows 30 s old survive one hour, not a 10 s expiry, and only
	// from the next read on (SetLimits itself expires nothing).
	now = now.Add(30 * time.Second)
	b.Add("b", map[string]string{"n": "young"})
	b.SetLimits(1000, 10*time.Second)
	if st := b.Stats(); st[1].Expired != 0 || st[1].Buffered != 4 {
		t.Fatalf("SetLimits expired rows itself: %+v", st[1])
	}
	rows, _ = b.Rows("b", 0)
	if len(rows) != 1 || rows[0]["n"] != "young" {
		t.Fatalf("after expiry 10 s: %v, want only young", rows)
	}
	if st := b.Stats(); st[1].Expired != 3 {
		t.Fatalf("expired %d, want 3", st[1].Expired)
	}

	// Zero means the defaults; negative expiry disables expiry.
	b.SetLimits(0, 0)
	if m, e := b.Limits(); m != DefaultMax || e != DefaultExpiry {
		t.Fatalf("SetLimits(0, 0): %d %v, want defaults", m, e)
	}
	b.SetLimits(5, -1)
	now = now.Add(1000 * time.Hour)
	if rows, _ := b.Rows("b", 0); len(rows) != 1 {
		t.Fatalf("expiry disabled: %d rows, want 1", len(rows))
	}
	if rows, _ := b.Rows("a", 0); len(rows) != 5 || rows[4]["n"] != "154" {
		t.Fatalf("max 5: %d rows", len(rows))
	}
}

// TestBufferSetLimitsConcurrent: SetLimits while sources add and tables
// read (run with -race) never leaves more than max rows.
func TestBufferSetLimitsConcurrent(t *testing.T) {
	b := NewBuffer(BufferOptions{Max: 1000})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			b.Add("t", map[string]string{})
			if i%100 == 0 {
				b.Rows("t", 0)
			}
		}
	}()
	for i := 0; i < 200; i++ {
		b.SetLimits(1+i%50, time.Hour)
		if st := b.Stats(); len(st) == 1 && st[0].Buffered > 1+i%50 {
			t.Fatalf("%d rows buffered over max %d", st[0].Buffered, 1+i%50)
		}
	}
	<-done
	st := b.Stats()[0]
	if st.Added != 20000 || uint64(st.Buffered)+st.Dropped+st.Expired != st.Added {
		t.Fatalf("counters do not add up: %+v", st)
	}
}
