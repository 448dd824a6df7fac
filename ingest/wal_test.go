package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
)

func openWAL(t *testing.T, dir string, opts wal.Options) *wal.WAL {
	t.Helper()
	opts.Dir = dir
	w, err := wal.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// runDrainer runs ing.Run until the test ends.
func runDrainer(t *testing.T, ing *ingest.Ingester) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func waitDrained(t *testing.T, ing *ingest.Ingester) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ing.WaitDrained(ctx); err != nil {
		t.Fatalf("WaitDrained: %v", err)
	}
}

// TestWALEndToEnd: many concurrent requests through the WAL into DuckDB.
func TestWALEndToEnd(t *testing.T) {
	s := openStore(t)
	w := openWAL(t, t.TempDir(), wal.Options{SegmentBytes: 64 << 10})
	ing := ingest.New(ingest.Options{Appender: s, WAL: w})
	runDrainer(t, ing)
	const hosts, reqs, perReq = 8, 10, 25
	var wg sync.WaitGroup
	for h := range hosts {
		wg.Go(func() {
			hh := vigil.Host{ID: fmt.Sprintf("h%d", h), Hostname: fmt.Sprintf("host%d", h)}
			for r := range reqs {
				var lines []json.RawMessage
				for l := range perReq {
					lines = append(lines, procLine("process_events", r, l, "x"))
				}
				if err := ing.Log(context.Background(), hh, "result", lines); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitDrained(t, ing)
	r, err := s.Query(context.Background(), "SELECT count(*), count(DISTINCT host_id), max(seq) FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	want := int64(hosts * reqs * perReq)
	if r.Rows[0][0] != want || r.Rows[0][1] != int64(hosts) || r.Rows[0][2] != want {
		t.Errorf("count, hosts, max seq = %v; want %d, %d, %d", r.Rows[0], want, hosts, want)
	}
	if st := w.Stats(); st.Commits >= st.Records {
		t.Errorf("WAL: %d commits for %d records: no group commit", st.Commits, st.Records)
	}
	if st := ing.Stats(); st.LinesAppended != want || st.EventsAccepted != want || st.WAL == nil || st.WAL.Pending != 0 || st.WAL.Records != hosts*reqs {
		t.Errorf("stats %+v", st)
	}
}

// TestWALReplay: requests acknowledged before a crash (nothing drained)
// reach the store after the restart, once, even when part of them had
// already reached it.
func TestWALReplay(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t)
	w, err := wal.Open(wal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ing := ingest.New(ingest.Options{Appender: s, WAL: w}) // no Run: the crash comes first
	ctx := context.Background()
	for r := range 5 {
		if err := ing.Log(ctx, host, "result", []json.RawMessage{procLine("process_events", r, 1, "a"), procLine("process_events", r, 2, "b")}); err != nil {
			t.Fatal(err)
		}
	}
	// Part of it made it to the store before the crash.
	direct := ingest.New(ingest.Options{Appender: s})
	if err := direct.Log(ctx, host, "result", []json.RawMessage{procLine("process_events", 0, 1, "a")}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	w2 := openWAL(t, dir, wal.Options{})
	ing2 := ingest.New(ingest.Options{Appender: s, WAL: w2})
	runDrainer(t, ing2)
	waitDrained(t, ing2)
	r, err := s.Query(ctx, "SELECT count(*), count(DISTINCT event_id) FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(10) || r.Rows[0][1] != int64(10) {
		t.Errorf("rows, distinct ids after replay = %v; want 10, 10", r.Rows[0])
	}
	if st := w2.Stats(); st.Recovered != 5 || st.Pending != 0 {
		t.Errorf("WAL stats after drain: %+v", st)
	}
}

// TestWALFullIsUnavailable: with the store stuck, the WAL fills up and Log
// answers ErrUnavailable (503) instead of buffering without bound.
func TestWALFullIsUnavailable(t *testing.T) {
	w := openWAL(t, t.TempDir(), wal.Options{MaxBytes: 4 << 10})
	ing := ingest.New(ingest.Options{WAL: w, Appender: appenderFunc(func(context.Context, vigil.Batch) error {
		return errors.New("store down")
	})})
	runDrainer(t, ing)
	var err error
	for n := 0; n < 100 && err == nil; n++ {
		err = ing.Log(context.Background(), host, "result", []json.RawMessage{procLine("q", n, 1, "x")})
	}
	if !errors.Is(err, vigil.ErrUnavailable) {
		t.Fatalf("Log with a full WAL: %v, want ErrUnavailable", err)
	}
	if st := ing.Stats(); st.Unavailable == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDrainerRetriesAndIsolatesInvalid: store failures are retried until
// they pass; a request the store refuses as invalid is dropped alone.
func TestDrainerRetriesAndIsolatesInvalid(t *testing.T) {
	var fails atomic.Int32
	fails.Store(3)
	var mu sync.Mutex
	stored := map[string]bool{}
	app := appenderFunc(func(_ context.Context, b vigil.Batch) error {
		if fails.Add(-1) >= 0 {
			return errors.New("transient")
		}
		for _, r := range b.Results {
			if r.HostID == "poison" {
				return fmt.Errorf("bad row: %w", vigil.ErrInvalid)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Results {
			stored[r.HostID+"/"+r.ID] = true
		}
		return nil
	})
	w := openWAL(t, t.TempDir(), wal.Options{CommitInterval: 20 * time.Millisecond})
	ing := ingest.New(ingest.Options{WAL: w, Appender: app})
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, h := range []string{"a", "poison", "b"} {
		wg.Go(func() {
			if err := ing.Log(ctx, vigil.Host{ID: h}, "result", []json.RawMessage{procLine("q", 1, 1, "x")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	runDrainer(t, ing)
	waitDrained(t, ing)
	mu.Lock()
	defer mu.Unlock()
	if len(stored) != 2 {
		t.Errorf("stored %v, want the rows of a and b", stored)
	}
	if st := ing.Stats(); st.StoreRejected != 1 || st.Unavailable < 3 {
		t.Errorf("stats %+v", st)
	}
}

// preparingStore is a store that converts batches ahead (as store/duckdb
// does): conversion refuses poison rows, writes fail for a while.
type preparingStore struct {
	mu       sync.Mutex
	stored   map[string]bool
	prepared int
	fails    atomic.Int32
}

func (s *preparingStore) check(b vigil.Batch) error {
	for _, r := range b.Results {
		if r.HostID == "poison" {
			return fmt.Errorf("bad row: %w", vigil.ErrInvalid)
		}
	}
	return nil
}

func (s *preparingStore) write(b vigil.Batch) error {
	if s.fails.Add(-1) >= 0 {
		return errors.New("transient")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Results {
		s.stored[r.HostID+"/"+r.ID] = true
	}
	return nil
}

func (s *preparingStore) Prepare(b vigil.Batch) (func(context.Context) error, error) {
	s.mu.Lock()
	s.prepared++
	s.mu.Unlock()
	if err := s.check(b); err != nil {
		return nil, err
	}
	return func(context.Context) error { return s.write(b) }, nil
}

func (s *preparingStore) Append(_ context.Context, b vigil.Batch) error {
	if err := s.check(b); err != nil {
		return err
	}
	return s.write(b)
}

// TestDrainerPreparedBatches: with a store that converts ahead, the
// drainer writes what the reader converted, retries failed writes, and
// when the conversion refuses a batch, appends it request by request so
// that only the refused request is dropped.
func TestDrainerPreparedBatches(t *testing.T) {
	for _, poison := range []bool{false, true} {
		s := &preparingStore{stored: map[string]bool{}}
		s.fails.Store(2)
		w := openWAL(t, t.TempDir(), wal.Options{CommitInterval: 20 * time.Millisecond})
		ing := ingest.New(ingest.Options{WAL: w, Appender: s})
		hosts := []string{"a", "b"}
		if poison {
			hosts = append(hosts, "poison")
		}
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Go(func() {
				if err := ing.Log(context.Background(), vigil.Host{ID: h}, "result", []json.RawMessage{procLine("q", 1, 1, "x")}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		runDrainer(t, ing)
		waitDrained(t, ing)
		s.mu.Lock()
		if len(s.stored) != 2 || s.prepared == 0 {
			t.Errorf("poison %v: stored %v after %d conversions, want the rows of a and b", poison, s.stored, s.prepared)
		}
		s.mu.Unlock()
		want := int64(0)
		if poison {
			want = 1
		}
		if st := ing.Stats(); st.StoreRejected != want || st.Unavailable < 2 || st.RowsAppended != 2 {
			t.Errorf("poison %v: stats %+v", poison, st)
		}
	}
}

// TestDrainerGathersATrickle: requests committed one by one are appended
// in a few batches, not one append each (each append has a fixed cost).
func TestDrainerGathersATrickle(t *testing.T) {
	var appends atomic.Int32
	var rows atomic.Int64
	app := appenderFunc(func(_ context.Context, b vigil.Batch) error {
		appends.Add(1)
		rows.Add(int64(len(b.Results)))
		return nil
	})
	w := openWAL(t, t.TempDir(), wal.Options{CommitInterval: time.Millisecond})
	ing := ingest.New(ingest.Options{WAL: w, Appender: app})
	runDrainer(t, ing)
	const requests = 30
	logRequests(t, ing, requests)
	waitDrained(t, ing)
	if rows.Load() != requests || appends.Load() > requests/3 {
		t.Errorf("%d rows in %d appends, want %d rows in at most %d", rows.Load(), appends.Load(), requests, requests/3)
	}
	t.Logf("%d requests in %d appends", requests, appends.Load())
}

// countingAppender counts the result rows appended to it.
func countingAppender() (*atomic.Int64, appenderFunc) {
	var rows atomic.Int64
	return &rows, func(_ context.Context, b vigil.Batch) error {
		rows.Add(int64(len(b.Results)))
		return nil
	}
}

// logRequests logs n requests of one result line each, for host "h".
func logRequests(t *testing.T, ing *ingest.Ingester, n int) {
	t.Helper()
	for i := range n {
		if err := ing.Log(context.Background(), vigil.Host{ID: "h"}, "result", []json.RawMessage{procLine("q", i, 1, "x")}); err != nil {
			t.Fatal(err)
		}
	}
}

// A window that opens after the drainer read a batch stops it before
// that batch is decoded and appended.
func TestDrainerYieldsMidBatch(t *testing.T) {
	rows, app := countingAppender()
	hold := make(chan struct{})
	var asks atomic.Int64
	w := openWAL(t, t.TempDir(), wal.Options{CommitInterval: time.Millisecond})
	ing := ingest.New(ingest.Options{WAL: w, Appender: app, Yield: func() <-chan struct{} {
		// Open from the second ask on: the first was before the read.
		if asks.Add(1) == 1 {
			return nil
		}
		select {
		case <-hold:
			return nil
		default:
			return hold
		}
	}})
	logRequests(t, ing, 5)
	runDrainer(t, ing)
	deadline := time.Now().Add(10 * time.Second)
	for asks.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the drainer read a batch and never asked Yield again")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // time enough to append, were it not waiting
	if n := rows.Load(); n != 0 {
		t.Fatalf("%d rows appended while the window was open", n)
	}
	close(hold)
	waitDrained(t, ing)
	if n := rows.Load(); n != 5 {
		t.Fatalf("%d rows appended after the window, want 5", n)
	}
}

// While Yield hands out an open channel, the drainer reads nothing (the
// rows stay durable in the WAL); once it closes, they are appended, and
// the time stood aside is counted.
func TestDrainerYields(t *testing.T) {
	rows, app := countingAppender()
	hold := make(chan struct{})
	asked := make(chan struct{}, 1)
	var holding atomic.Bool
	holding.Store(true)
	w := openWAL(t, t.TempDir(), wal.Options{CommitInterval: time.Millisecond})
	ing := ingest.New(ingest.Options{WAL: w, Appender: app, Yield: func() <-chan struct{} {
		if !holding.Load() {
			return nil
		}
		select {
		case asked <- struct{}{}:
		default:
		}
		return hold
	}})
	// Logged before the drainer starts: its first read would take them.
	logRequests(t, ing, 5)
	runDrainer(t, ing)
	select {
	case <-asked: // the drainer is waiting on hold, before reading
	case <-time.After(10 * time.Second):
		t.Fatal("the drainer never asked Yield before reading")
	}
	if n := rows.Load(); n != 0 {
		t.Fatalf("%d rows appended while the drainer was to stand aside", n)
	}
	if p := ing.Stats().WAL.Pending; p == 0 {
		t.Fatal("nothing pending in the WAL while held")
	}
	holding.Store(false)
	close(hold)
	waitDrained(t, ing)
	if n := rows.Load(); n != 5 {
		t.Fatalf("%d rows appended after the hold, want 5", n)
	}
	if ing.Stats().Yielded <= 0 {
		t.Error("time stood aside not counted in Stats.Yielded")
	}
}
