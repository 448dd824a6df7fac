package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stopFolding stops db's folder, as a crash would: answers are journaled
// from then on but not written to campaign_hosts.
func stopFolding(t *testing.T, db *DB) {
	t.Helper()
	db.journal.cancel()
	<-db.journal.done
}

// crash closes db without folding what is journaled.
func crash(t *testing.T, db *DB) {
	t.Helper()
	stopFolding(t, db)
	if err := db.journal.wal.Close(); err != nil {
		t.Fatal(err)
	}
	db.journal.lock.Close() // the process's end releases it
	db.journal = nil
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func journalCampaign(t *testing.T, db *DB, hosts ...CampaignHost) Campaign {
	t.Helper()
	now := time.Now()
	c, err := db.CreateCampaign(context.Background(), Campaign{SQL: "SELECT 1", Actor: "alice", CreatedAt: now,
		Deadline: now.Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An answer is recorded (and completes its campaign) once journaled,
// before it is folded; what is journaled is folded at the next start.
func TestJournalAnswersSurviveACrash(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := journalCampaign(t, db, CampaignHost{HostID: "a", Hostname: "a"}, CampaignHost{HostID: "b", Hostname: "b"},
		CampaignHost{HostID: "c", Hostname: "c", Status: StatusOffline})
	stopFolding(t, db)

	rec, done, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK, Rows: []map[string]string{{"y": "2", "x": "1"}}, Columns: []string{"y", "x"}})
	if err != nil || !rec || done {
		t.Fatalf("RecordResult a = %v %v %v; want recorded, not done", rec, done, err)
	}
	// Again, and from hosts that owe nothing: not recorded.
	for _, h := range []string{"a", "c", "nobody"} {
		if rec, done, err := db.RecordResult(ctx, c.ID, h, Result{Status: StatusOK}); err != nil || rec || done {
			t.Errorf("RecordResult %s = %v %v %v; want not recorded", h, rec, done, err)
		}
	}
	// A host whose answer is journaled is not handed the query again,
	// though campaign_hosts still shows it pending.
	if q, err := db.TakePendingQueries(ctx, "a", time.Now()); err != nil || len(q) != 0 {
		t.Errorf("TakePendingQueries a after its answer = %v, %v; want none", q, err)
	}
	rec, done, err = db.RecordResult(ctx, c.ID, "b", Result{Status: StatusError, Error: "no such table: x"})
	if err != nil || !rec || !done {
		t.Fatalf("RecordResult b = %v %v %v; want recorded and done", rec, done, err)
	}
	// A read cannot be answered while nothing folds: it says so, rather
	// than wait forever.
	if err := db.Settle(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Settle with the folder stopped = %v, want %v", err, errClosed)
	}
	// The summary is the journal's, before anything is folded.
	if s, err := db.CampaignSummary(ctx, c.ID); err != nil || s != (Summary{Total: 3, OK: 1, Error: 1, Offline: 1}) {
		t.Errorf("summary before folding = %+v, %v", s, err)
	}
	crash(t, db)

	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.GetCampaign(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.Summary != (Summary{Total: 3, OK: 1, Error: 1, Offline: 1}) {
		t.Fatalf("after the restart: done %v, summary %+v; want done with a ok, b error", got.Done, got.Summary)
	}
	for _, h := range got.Hosts {
		switch h.HostID {
		case "a":
			if h.Status != StatusOK || h.RowCount != 1 || len(h.Rows) != 1 || h.Rows[0]["x"] != "1" || len(h.Columns) != 2 || h.Columns[0] != "y" {
				t.Errorf("a = %+v", h)
			}
		case "b":
			if h.Status != StatusError || h.Error != "no such table: x" || h.Rows != nil {
				t.Errorf("b = %+v", h)
			}
		}
	}
	// Folded once: the journal is empty now.
	if end := db.journal.wal.End(); db.journal.wal.Start() != end {
		t.Errorf("journal not released after the replay: start %v, end %v", db.journal.wal.Start(), end)
	}
}

// Readers see an answer as soon as RecordResult returned, though the
// folder may not have written it yet; the campaign's completion is the
// time its last answer was journaled.
func TestJournalReadersSettle(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	c := journalCampaign(t, db, CampaignHost{HostID: "a", Hostname: "a"})
	// Hold the writer: the folder cannot write until the test lets it.
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	rec, done, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK, Rows: []map[string]string{{"x": "1"}}})
	after := time.Now()
	if err != nil || !rec || !done {
		t.Fatalf("RecordResult = %v %v %v", rec, done, err)
	}
	read := make(chan Campaign, 1)
	go func() {
		got, err := db.GetCampaign(ctx, c.ID)
		if err != nil {
			t.Error(err)
		}
		read <- got
	}()
	select {
	case got := <-read:
		t.Fatalf("read while the answer could not be written: %+v", got)
	case <-time.After(100 * time.Millisecond):
	}
	time.Sleep(50 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	got := <-read
	if !got.Done || got.Summary.OK != 1 || got.Hosts[0].Status != StatusOK {
		t.Fatalf("read after the fold: %+v", got)
	}
	if got.CompletedAt.Before(before.Truncate(0)) || got.CompletedAt.After(after) {
		t.Errorf("completed at %v; want when the answer was journaled, between %v and %v", got.CompletedAt, before, after)
	}
}

// While a live query's window is open (SetYield) journaled answers are
// not folded, though they pause: the window's close folds them, and a
// reader still has them folded at once.
func TestJournalFoldWaitsForWindow(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	var win atomic.Pointer[chan struct{}]
	openWindow := func() chan struct{} {
		ch := make(chan struct{})
		win.Store(&ch)
		return ch
	}
	closeWindow := func() {
		close(*win.Load())
		win.Store(nil)
	}
	db.SetYield(func() <-chan struct{} {
		if ch := win.Load(); ch != nil {
			return *ch
		}
		return nil
	})
	folded := func() bool { return db.journal.wal.Start() == db.journal.wal.End() }
	c := journalCampaign(t, db, CampaignHost{HostID: "a", Hostname: "a"}, CampaignHost{HostID: "b", Hostname: "b"})

	openWindow()
	if rec, _, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK}); err != nil || !rec {
		t.Fatalf("RecordResult a = %v, %v", rec, err)
	}
	time.Sleep(5 * foldQuiet)
	if folded() {
		t.Fatalf("a's answer folded %v after it, inside the window", 5*foldQuiet)
	}
	closeWindow()
	deadline := time.Now().Add(foldMaxDelay / 2)
	for !folded() {
		if time.Now().After(deadline) {
			t.Fatalf("a's answer not folded %v after the window closed", foldMaxDelay/2)
		}
		time.Sleep(10 * time.Millisecond)
	}

	openWindow()
	defer closeWindow()
	if rec, _, err := db.RecordResult(ctx, c.ID, "b", Result{Status: StatusError, Error: "x"}); err != nil || !rec {
		t.Fatalf("RecordResult b = %v, %v", rec, err)
	}
	start := time.Now()
	h, err := db.CampaignHost(ctx, c.ID, "b")
	if err != nil || h.Status != StatusError {
		t.Fatalf("b read inside the window = %+v, %v", h, err)
	}
	if d := time.Since(start); d > foldMaxDelay/2 {
		t.Errorf("a read inside the window waited %v for the fold", d)
	}
}

// A campaign's deadline counts the answers journaled before it, and
// later answers take the SQLite path, which refuses them.
func TestJournalExpireCountsJournaled(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	c := journalCampaign(t, db, CampaignHost{HostID: "a", Hostname: "a"}, CampaignHost{HostID: "b", Hostname: "b"})
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK}); err != nil || !rec {
		t.Fatalf("RecordResult a = %v, %v", rec, err)
	}
	type expired struct {
		timedOut  []CampaignHost
		completed bool
	}
	res := make(chan expired, 1)
	go func() {
		to, completed, err := db.ExpireCampaign(ctx, c.ID, time.Now())
		if err != nil {
			t.Error(err)
		}
		res <- expired{to, completed}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	e := <-res
	if !e.completed || len(e.timedOut) != 1 || e.timedOut[0].HostID != "b" {
		t.Fatalf("ExpireCampaign = %+v; want b timed out, a answered", e)
	}
	if rec, done, err := db.RecordResult(ctx, c.ID, "b", Result{Status: StatusOK}); err != nil || rec || done {
		t.Errorf("answer after the deadline = %v %v %v; want not recorded", rec, done, err)
	}
	got, err := db.GetCampaign(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Summary != (Summary{Total: 2, OK: 1, Timeout: 1}) {
		t.Errorf("summary %+v; want a ok, b timed out", got.Summary)
	}
}

// Campaigns the journal does not track (created before a restart) are
// answered through SQLite as before.
func TestJournalUntrackedCampaign(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := journalCampaign(t, db, CampaignHost{HostID: "a", Hostname: "a"}, CampaignHost{HostID: "b", Hostname: "b"})
	if rec, _, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK}); err != nil || !rec {
		t.Fatalf("RecordResult a = %v, %v", rec, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.journal.summary(c.ID); ok {
		t.Fatal("a campaign of the previous run is tracked")
	}
	if rec, done, err := db.RecordResult(ctx, c.ID, "a", Result{Status: StatusOK}); err != nil || rec || done {
		t.Errorf("a again = %v %v %v; want not recorded", rec, done, err)
	}
	if rec, done, err := db.RecordResult(ctx, c.ID, "b", Result{Status: StatusOK}); err != nil || !rec || !done {
		t.Errorf("b = %v %v %v; want recorded and done", rec, done, err)
	}
}

// Answers spread over many journal segments (each commit may start a
// fresh one, which moves the journal's end with nothing in it) are all
// folded, and reads do not wait for answers that never come.
func TestJournalAcrossSegments(t *testing.T) {
	defer func(n int64) { journalSegmentBytes = n }(journalSegmentBytes)
	journalSegmentBytes = 300
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openTest(t)
	var hosts []CampaignHost
	for i := range 20 {
		hosts = append(hosts, CampaignHost{HostID: fmt.Sprint("h", i), Hostname: fmt.Sprint("h", i)})
	}
	c := journalCampaign(t, db, hosts...)
	for i, h := range hosts {
		rec, done, err := db.RecordResult(ctx, c.ID, h.HostID, Result{Status: StatusOK, Rows: []map[string]string{{"i": fmt.Sprint(i)}}})
		if err != nil || !rec || done != (i == len(hosts)-1) {
			t.Fatalf("answer %d = %v %v %v", i, rec, done, err)
		}
		if i%5 == 4 {
			got, err := db.GetCampaign(ctx, c.ID)
			if err != nil {
				t.Fatalf("read after answer %d: %v", i, err)
			}
			if got.Summary.OK != i+1 {
				t.Fatalf("read after answer %d: %d ok", i, got.Summary.OK)
			}
		}
	}
	if segs, _ := filepath.Glob(filepath.Join(db.path+"-answers", "*.wal")); len(segs) > 2 {
		t.Errorf("%d journal segments left after every answer was folded", len(segs))
	}
}

// A second process on the same SQLite state would interleave its
// journal with this one's: it is refused, saying why.
func TestJournalOneProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock on windows: one server per data directory is up to the operator")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another open file description stands for another process.
	if _, err := Open(ctx, path, nil); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open = %v; want refused as in use", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db.Close()
}

func TestJournalRecordRoundTrip(t *testing.T) {
	q := &resultReq{campaignID: "c\"1", hostID: "h\n1", rowCount: 2, rowsJSON: `[{"a":"1"},{"a":"2"}]`, columnsJSON: `["a"]`,
		r: Result{Status: StatusOK, Time: time.Unix(0, 1234567)}}
	got, err := decodeJournalRecord(appendJournalRecord(nil, q))
	if err != nil {
		t.Fatal(err)
	}
	if got.campaignID != q.campaignID || got.hostID != q.hostID || got.rowCount != 2 || got.rowsJSON != q.rowsJSON ||
		got.columnsJSON != q.columnsJSON || got.r.Status != StatusOK || !got.r.Time.Equal(q.r.Time) {
		t.Errorf("round trip: %+v, want %+v", got, q)
	}
	e := &resultReq{campaignID: "c", hostID: "h", r: Result{Status: StatusError, Error: "boom", Time: time.Unix(5, 0)}}
	got, err = decodeJournalRecord(appendJournalRecord(nil, e))
	if err != nil || got.rowsJSON != nil || got.columnsJSON != nil || got.r.Error != "boom" {
		t.Errorf("error round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{``, `{}`, `{"c":"c","h":"h","s":"pending"}`, `{"c":1}`} {
		if _, err := decodeJournalRecord([]byte(bad)); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

func FuzzJournalRecord(f *testing.F) {
	f.Add([]byte(`{"c":"c","h":"h","s":"ok","n":1,"t":5,"r":[{"a":"1"}],"k":["a"]}`))
	f.Add([]byte(`{"c":"c","h":"h","s":"error","e":"x","n":0,"t":5}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := decodeJournalRecord(raw)
		if err != nil {
			return
		}
		// What decodes encodes back to the same answer.
		again, err := decodeJournalRecord(appendJournalRecord(nil, q))
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", appendJournalRecord(nil, q), err)
		}
		if again.campaignID != q.campaignID || again.hostID != q.hostID || again.r.Status != q.r.Status ||
			again.r.Error != q.r.Error || again.rowCount != q.rowCount || !again.r.Time.Equal(q.r.Time) ||
			again.rowsJSON != q.rowsJSON || again.columnsJSON != q.columnsJSON {
			t.Fatalf("round trip changed %+v to %+v", q, again)
		}
	})
}
