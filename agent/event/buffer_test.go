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
