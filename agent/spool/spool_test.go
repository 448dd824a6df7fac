package spool

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, dir string, o Options) *Spool {
	t.Helper()
	o.Dir = dir
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(i int) []byte {
	return []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%50)))
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

// drain peeks and acks everything, checking the records are rec(from..).
func drain(t *testing.T, s *Spool, from int, batch int) int {
	t.Helper()
	n := from
	for {
		recs, err := s.Peek(batch, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return n
		}
		for _, r := range recs {
			if !bytes.Equal(r.Data, rec(n)) {
				t.Fatalf("record seq %d = %s, want %s", r.Seq, r.Data, rec(n))
			}
			n++
		}
		if err := s.Ack(recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendPeekAckReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 4096})
	appendN(t, s, 0, 500)
	// Peek twice without ack returns the same records.
	a, _ := s.Peek(10, 1<<20)
	b, _ := s.Peek(10, 1<<20)
	if len(a) != 10 || a[0].Seq != b[0].Seq || !bytes.Equal(a[9].Data, b[9].Data) {
		t.Fatalf("peek not repeatable: %d %d", len(a), len(b))
	}
	if err := s.Ack(a[4].Seq); err != nil { // ack 5 of the 10
		t.Fatal(err)
	}
	c, _ := s.Peek(1, 1<<20)
	if !bytes.Equal(c[0].Data, rec(5)) {
		t.Fatalf("after ack of 5: %s", c[0].Data)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if len(segs) < 5 {
		t.Fatalf("expected several segments, got %d", len(segs))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the 5 acknowledged stay gone, the rest are there in order.
	s = open(t, dir, Options{SegmentBytes: 4096})
	if s.Len() != 495 {
		t.Fatalf("reopened Len = %d, want 495", s.Len())
	}
	appendN(t, s, 500, 600)
	if n := drain(t, s, 5, 37); n != 600 {
		t.Fatalf("drained to %d, want 600", n)
	}
	// Acknowledged segments are deleted (only the active one remains).
	segs, _ = filepath.Glob(filepath.Join(dir, "*"+segExt))
	if len(segs) != 1 {
		t.Fatalf("%d segments left after full ack", len(segs))
	}
	st := s.Stats()
	if st.Pending != 0 || st.Acked != 595 || st.Appended != 100 {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	s = open(t, dir, Options{})
	if s.Len() != 0 {
		t.Fatalf("after full ack and reopen Len = %d", s.Len())
	}
	seq, _ := s.Append([]byte("next"))
	if seq != 601 {
		t.Fatalf("seq after reopen = %d, want 601 (numbering continues)", seq)
	}
	s.Close()
}

func TestPeekByteLimit(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	big := bytes.Repeat([]byte("b"), 1000)
	for i := 0; i < 10; i++ {
		s.Append(big)
	}
	recs, _ := s.Peek(100, 3500)
	if len(recs) != 3 {
		t.Fatalf("byte-limited peek: %d records, want 3", len(recs))
	}
	recs, _ = s.Peek(100, 10) // always at least one
	if len(recs) != 1 {
		t.Fatalf("tiny limit: %d records, want 1", len(recs))
	}
}

func TestMaxRecordsDropsOldest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxRecords: 100, SegmentBytes: 2048})
	appendN(t, s, 0, 350)
	if s.Len() != 100 {
		t.Fatalf("Len %d, want 100", s.Len())
	}
	if st := s.Stats(); st.Dropped != 250 {
		t.Fatalf("dropped %d, want 250", st.Dropped)
	}
	s.Close()
	s = open(t, dir, Options{MaxRecords: 100, SegmentBytes: 2048})
	defer s.Close()
	if n := drain(t, s, 250, 64); n != 350 {
		t.Fatalf("drained to %d", n)
	}
}

func TestTornTailRecovered(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 10)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
	p := segs[len(segs)-1]
	st, _ := os.Stat(p)
	// Cut the last record in half, as a crash mid-write would.
	if err := os.Truncate(p, st.Size()-7); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	if s.Len() != 9 {
		t.Fatalf("Len after torn tail = %d, want 9", s.Len())
	}
	appendN(t, s, 9, 12) // new records after the cut are readable
	if n := drain(t, s, 0, 5); n != 12 {
		t.Fatalf("drained to %d", n)
	}
	s.Close()
}

func TestCorruptRecordDetected(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 10)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
	b, _ := os.ReadFile(segs[0])
	i := bytes.Index(b, []byte(`"n":5`))
	b[i+2] ^= 0xff
	os.WriteFile(segs[0], b, 0o600)
	s = open(t, dir, Options{})
	defer s.Close()
	if s.Len() != 5 {
		t.Fatalf("Len with record 5 corrupt = %d, want 5 (records 0-4)", s.Len())
	}
	if n := drain(t, s, 0, 100); n != 5 {
		t.Fatalf("drained to %d", n)
	}
}

func TestConcurrentGroupCommit(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := s.Append([]byte("x")); err != nil {
					t.Error(err)
				}
				if err := s.Sync(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Appended != 400 {
		t.Fatalf("appended %d", st.Appended)
	}
	t.Logf("400 append+sync calls from 8 goroutines used %d fsyncs", st.Syncs)
	if st.Syncs >= 400 {
		t.Fatalf("no group commit: %d fsyncs for 400 syncs", st.Syncs)
	}
}

// TestKill9 re-executes the test binary as a child that appends and syncs
// records as fast as it can, printing each synced seq; the parent kills it
// with SIGKILL mid-stream, reopens the spool and checks that every record
// reported synced is there, intact and in order.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("VIGIL_SPOOL_CHILD"); dir != "" {
		s, err := Open(Options{Dir: dir, SegmentBytes: 64 << 10})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		w := bufio.NewWriter(os.Stdout)
		for i := 0; ; i++ {
			var batch [][]byte
			for j := 0; j < 10; j++ {
				batch = append(batch, rec(i*10+j))
			}
			last, err := s.Append(batch...)
			if err == nil {
				err = s.Sync()
			}
			if err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			fmt.Fprintf(w, "%d\n", last)
			w.Flush()
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "VIGIL_SPOOL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var synced uint64
	deadline := time.Now().Add(20 * time.Second)
	for sc.Scan() {
		line := sc.Text()
		n, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			t.Fatalf("child: %s", line)
		}
		synced = n
		if synced >= 3000 || time.Now().After(deadline) {
			cmd.Process.Kill()
			break
		}
	}
	cmd.Wait()
	if synced == 0 {
		t.Fatal("child synced nothing")
	}
	s := open(t, dir, Options{})
	defer s.Close()
	if uint64(s.Len()) < synced {
		t.Fatalf("after kill -9: %d records, child had synced %d", s.Len(), synced)
	}
	if n := drain(t, s, 0, 1000); uint64(n) < synced {
		t.Fatalf("drained %d intact records, child had synced %d", n, synced)
	}
	t.Logf("child killed after %d synced records; all recovered", synced)
}

func BenchmarkAppendSync100(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	line := bytes.Repeat([]byte("r"), 400)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = line
	}
	b.SetBytes(int64(100 * len(line)))
	for i := 0; i < b.N; i++ {
		s.Append(batch...)
		s.Sync()
	}
}

func FuzzOpenSegment(f *testing.F) {
	var good []byte
	for i := 1; i <= 3; i++ {
		good = appendRecord(good, uint64(i), rec(i))
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segExt)), data, 0o600)
		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		n := s.Len()
		recs, err := s.Peek(n+1, 1<<30)
		if err != nil {
			t.Fatalf("peek after recovery: %v", err)
		}
		if len(recs) != n {
			t.Fatalf("Len %d but peek %d", n, len(recs))
		}
		if _, err := s.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSetMaxRecordsAtRuntime: lowering the bound drops the oldest pending
// records at once and counts them; later appends keep to the new bound.
func TestSetMaxRecordsAtRuntime(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	appendN(t, s, 0, 10)
	s.SetMaxRecords(4)
	if st := s.Stats(); st.Pending != 4 || st.Dropped != 6 {
		t.Fatalf("after SetMaxRecords(4): pending %d dropped %d, want 4 and 6", st.Pending, st.Dropped)
	}
	appendN(t, s, 10, 12)
	if st := s.Stats(); st.Pending != 4 || st.Dropped != 8 {
		t.Fatalf("after 2 more: pending %d dropped %d, want 4 and 8", st.Pending, st.Dropped)
	}
	if n := drain(t, s, 8, 100); n != 12 {
		t.Fatalf("drained up to %d, want 12", n)
	}
}

// TestUnsynced: appended records count as unsynced until a Sync returns.
func TestUnsynced(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	if _, err := s.Append(rec(1), rec(2)); err != nil {
		t.Fatal(err)
	}
	if n := s.Unsynced(); n != 2 {
		t.Fatalf("Unsynced = %d before Sync, want 2", n)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := s.Unsynced(); n != 0 {
		t.Fatalf("Unsynced = %d after Sync, want 0", n)
	}
}
