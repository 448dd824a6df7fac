package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

func openT(t *testing.T, opts Options) *WAL {
	t.Helper()
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func rec(i int) []byte { return []byte(fmt.Sprintf("record %d %s", i, strings.Repeat("x", i%50))) }

// appendRecs appends rec(0) to rec(n-1).
func appendRecs(t *testing.T, w *WAL, n int) {
	t.Helper()
	for i := range n {
		if err := w.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads every committed record from p without waiting.
func readAll(t *testing.T, w *WAL, p Pos) ([][]byte, Pos) {
	t.Helper()
	var out [][]byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		recs, next, err := w.Read(ctx, p, 1000)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out, p
		}
		if err != nil {
			t.Fatalf("Read(%v): %v", p, err)
		}
		out = append(out, recs...)
		p = next
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, SegmentBytes: 300})
	ctx := context.Background()
	appendRecs(t, w, 40)
	got, end := readAll(t, w, w.Start())
	if len(got) != 40 {
		t.Fatalf("read %d records, want 40", len(got))
	}
	for i, r := range got {
		if !bytes.Equal(r, rec(i)) {
			t.Fatalf("record %d: %q", i, r)
		}
	}
	if st := w.Stats(); st.Segments < 3 {
		t.Errorf("segments %d: SegmentBytes 300 did not rotate", st.Segments)
	}
	// Release the first half; reopen: the rest is read again (replay).
	half, _ := readAll(t, w, w.Start())
	_ = half
	var mid Pos
	p := w.Start()
	for n := 0; n < 20; {
		recs, next, err := w.Read(ctx, p, 1)
		if err != nil {
			t.Fatal(err)
		}
		n += len(recs)
		p, mid = next, next
	}
	if err := w.Release(mid); err != nil {
		t.Fatal(err)
	}
	_ = end
	w.Close()

	w2 := openT(t, Options{Dir: dir, SegmentBytes: 300})
	again, _ := readAll(t, w2, w2.Start())
	if len(again) != 20 || !bytes.Equal(again[0], rec(20)) {
		t.Fatalf("after reopen read %d records starting %q, want 20 from record 20", len(again), first(again))
	}
	// New appends follow the replayed ones.
	if err := w2.Append(ctx, []byte("new")); err != nil {
		t.Fatal(err)
	}
	all, _ := readAll(t, w2, w2.Start())
	if len(all) != 21 || string(all[20]) != "new" {
		t.Fatalf("read %d records, last %q", len(all), all[len(all)-1])
	}
}

func first(r [][]byte) []byte {
	if len(r) == 0 {
		return nil
	}
	return r[0]
}

func TestReleaseDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, SegmentBytes: 200})
	appendRecs(t, w, 30)
	segs := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		return len(m)
	}
	before := segs()
	recs, end := readAll(t, w, w.Start())
	if len(recs) != 30 {
		t.Fatalf("%d records", len(recs))
	}
	if segs() != before {
		t.Fatal("segments deleted before release")
	}
	if err := w.Release(end); err != nil {
		t.Fatal(err)
	}
	if n := segs(); n != 1 {
		t.Errorf("%d segment files after releasing everything, want 1 (the open one); had %d", n, before)
	}
	if st := w.Stats(); st.Pending != 0 {
		t.Errorf("pending %d after releasing everything", st.Pending)
	}
}

// TestGroupCommit: concurrent appends share fsyncs.
func TestGroupCommit(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir(), CommitInterval: 5 * time.Millisecond})
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := w.Append(context.Background(), rec(i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Records != n {
		t.Fatalf("records %d", st.Records)
	}
	if st.Commits >= n/4 {
		t.Errorf("%d fsyncs for %d concurrent records: no group commit", st.Commits, n)
	}
	t.Logf("%d records in %d commits", st.Records, st.Commits)
}

// TestCommitBytesClosesGroup: a group reaching CommitBytes commits at
// once instead of waiting for CommitInterval.
func TestCommitBytesClosesGroup(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir(), CommitInterval: time.Hour, CommitBytes: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Append(ctx, bytes.Repeat([]byte("a"), 200)); err != nil {
		t.Fatalf("a record over CommitBytes waited: %v", err)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	w, err := Open(Options{Dir: dir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	seg := filepath.Join(dir, segName(1))
	data, _ := os.ReadFile(seg)
	// A crash mid-write: half of a sixth record.
	torn := appendRecord(nil, rec(5))
	if err := os.WriteFile(seg, append(data, torn[:len(torn)/2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	w = openT(t, Options{Dir: dir, Logger: logger})
	recs, _ := readAll(t, w, w.Start())
	if len(recs) != 5 {
		t.Fatalf("%d records after cutting the torn tail, want 5", len(recs))
	}
	if st := w.Stats(); st.CutBytes != int64(len(torn)/2) || st.Recovered != 5 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "cutting a torn or corrupt tail") || !strings.Contains(logs.String(), fmt.Sprintf("cut_bytes=%d", len(torn)/2)) {
		t.Errorf("the cut was not logged: %s", logs.String())
	}
	if fi, _ := os.Stat(seg); fi.Size() != int64(len(data)) {
		t.Errorf("segment is %d bytes after the cut, want %d", fi.Size(), len(data))
	}
}

func TestCorruptRecordCutsRest(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.Append(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	seg := filepath.Join(dir, segName(1))
	data, _ := os.ReadFile(seg)
	third := len(appendRecord(nil, rec(0))) + len(appendRecord(nil, rec(1)))
	data[third+headerLen+2] ^= 0xff // flip a bit inside record 2's payload
	os.WriteFile(seg, data, 0o600)
	w = openT(t, Options{Dir: dir})
	recs, _ := readAll(t, w, w.Start())
	if len(recs) != 2 {
		t.Fatalf("%d records, want the 2 before the corrupt one", len(recs))
	}
}

func TestFullIsUnavailable(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir(), MaxBytes: 1000})
	ctx := context.Background()
	var err error
	n := 0
	for ; n < 100; n++ {
		if err = w.Append(ctx, bytes.Repeat([]byte("z"), 100)); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrFull) || !errors.Is(err, vigil.ErrUnavailable) {
		t.Fatalf("after %d appends: %v, want ErrFull wrapping vigil.ErrUnavailable", n, err)
	}
	if n != 9 {
		t.Errorf("%d records of 108 bytes fit in 1000, want 9", n)
	}
	// Releasing makes room again.
	_, end := readAll(t, w, w.Start())
	if err := w.Release(end); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, []byte("again")); err != nil {
		t.Errorf("after release: %v", err)
	}
}

func TestReadWaitsForCommit(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir()})
	got := make(chan []byte, 1)
	go func() {
		recs, _, err := w.Read(context.Background(), w.Start(), 100)
		if err != nil {
			t.Error(err)
		}
		got <- first(recs)
	}()
	time.Sleep(20 * time.Millisecond)
	if err := w.Append(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if string(r) != "hello" {
			t.Errorf("read %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not wake up on commit")
	}
}

func TestClosedWAL(t *testing.T) {
	w, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Append(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, _, err := w.Read(context.Background(), w.Start(), 10); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
}

// FuzzScan: any bytes as a segment give a valid prefix made of whole
// records, and a segment of real records followed by garbage keeps them.
func FuzzScan(f *testing.F) {
	f.Add([]byte{}, []byte("garbage"))
	f.Add(appendRecord(nil, []byte("one")), []byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, payload, tail []byte) {
		good, n := Scan(tail)
		if good < 0 || good > int64(len(tail)) || n < 0 {
			t.Fatalf("Scan(tail) = %d, %d", good, n)
		}
		seg := appendRecord(appendRecord(nil, payload), []byte("second"))
		seg = append(seg, tail...)
		good, n = Scan(seg)
		if n < 2 || good < int64(len(seg)-len(tail)) {
			t.Fatalf("real records lost: %d records, %d good bytes of %d", n, good, len(seg)-len(tail))
		}
		rec, k, ok := parseRecord(seg)
		if !ok || !bytes.Equal(rec, payload) || k != headerLen+len(payload) {
			t.Fatal("first record does not parse back")
		}
	})
}

func BenchmarkAppendParallel(b *testing.B) {
	w, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	payload := bytes.Repeat([]byte("p"), 4096)
	b.SetParallelism(32)
	b.SetBytes(int64(len(payload)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Append(context.Background(), payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := w.Stats()
	b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "records/fsync")
}

// TestReadAfterReleasingAFinishedSegment: the reader's position at the end
// of a released (deleted) segment carries on into the next one.
func TestReadAfterReleasingAFinishedSegment(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir(), SegmentBytes: 100})
	ctx := context.Background()
	appendRecs(t, w, 3)
	recs, next, err := w.Read(ctx, w.Start(), 10_000)
	if err != nil || len(recs) == 0 {
		t.Fatal(recs, err)
	}
	if err := w.Release(next); err != nil {
		t.Fatal(err)
	}
	rest, _ := readAll(t, w, next)
	if len(recs)+len(rest) != 3 {
		t.Errorf("read %d then %d records, want 3 in all", len(recs), len(rest))
	}
}

// After a clean stop (everything released), a reopened log starts drained:
// Start reaches End with no new record, so a shutdown's drain wait ends at
// once (it used to wait for a record that never came), and the released
// segment files are gone.
func TestReopenFullyReleasedIsDrained(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, Options{Dir: dir, SegmentBytes: 200})
	appendRecs(t, w, 30)
	_, end := readAll(t, w, w.Start())
	if err := w.Release(end); err != nil {
		t.Fatal(err)
	}
	w.Close()

	w2 := openT(t, Options{Dir: dir, SegmentBytes: 200})
	if w2.Start().Less(w2.End()) {
		t.Fatalf("reopened after releasing everything: start %v before end %v", w2.Start(), w2.End())
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(m) != 1 {
		t.Errorf("%d segment files after reopening a released log, want 1 (the fresh one): %v", len(m), m)
	}
	if got, _ := readAll(t, w2, w2.Start()); len(got) != 0 {
		t.Fatalf("replayed %d released records", len(got))
	}
	// A third open (the checkpoint now names the fresh segment) is drained too.
	w2.Close()
	w3 := openT(t, Options{Dir: dir, SegmentBytes: 200})
	if w3.Start().Less(w3.End()) {
		t.Fatalf("third open: start %v before end %v", w3.Start(), w3.End())
	}
}

// A new log starts released where it ends: a reader or a drain waiting
// for the released position to reach the end has nothing to wait for.
func TestNewLogStartsAtItsEnd(t *testing.T) {
	w := openT(t, Options{Dir: t.TempDir()})
	if w.Start() != w.End() {
		t.Fatalf("new log: start %v, end %v", w.Start(), w.End())
	}
	appendRecs(t, w, 3)
	recs, next := readAll(t, w, w.Start())
	if len(recs) != 3 {
		t.Fatalf("read %d records, want 3", len(recs))
	}
	if err := w.Release(next); err != nil {
		t.Fatal(err)
	}
	if w.Start() != w.End() {
		t.Errorf("after releasing everything: start %v, end %v", w.Start(), w.End())
	}
}
