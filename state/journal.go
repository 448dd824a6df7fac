package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/osquery"
)

// With SQLite, a live query's answers are first written to a journal of
// their own (a write-ahead log like ingest's: one fsync per commit group
// of a few milliseconds) and folded into campaign_hosts by one goroutine
// behind it. An agent's distributed/write is answered, and the campaign is
// complete, once the answers are in the journal. Before, every answer
// waited for the one SQLite writer; at 10,000 agents answering within a
// second that writer needed 0.4 s of CPU but, one goroutine among the
// thousands serving the agents, got it over 1-2 s, and every answer was in
// only then (docs/scaling.md). Appending costs microseconds of CPU an
// answer; folding is off the live query's path.
//
// The journal keeps, for each campaign this process created and has not
// seen folded complete, which hosts still owe an answer and the
// campaign's summary: that is what decides, without SQLite, whether an
// answer is recorded (a target that has not answered) and whether it
// completes the campaign. Everything else reads SQLite after settle, which
// waits until every answer journaled so far is folded; so no reader sees
// an answered host as still pending. Campaigns it does not track (created
// before a restart, or with PostgreSQL) take the path they always took.
// At Open, answers left unfolded by a crash are folded before anything
// else runs.

// journalSegmentBytes: answers are folded within seconds and their
// segments deleted, so segments stay small. (A variable for tests.)
var journalSegmentBytes int64 = 16 << 20

// journalReadBytes is how much one fold reads: a transaction of a few
// thousand answers.
const journalReadBytes = 4 << 20

type journal struct {
	wal  *wal.WAL
	lock *os.File // held while open (lockDir)

	mu     sync.Mutex
	idle   *sync.Cond // a campaign's appends in flight reached zero
	camps  map[string]*tracked
	closed bool

	now func() time.Time // the state's clock (SetClock)

	// Every answer before the journal's released position (Start) is in
	// campaign_hosts: each fold releases what it wrote.
	foldMu   sync.Mutex
	foldedCh chan struct{} // closed and replaced at every fold
	urgent   chan struct{} // a reader waits (settle): fold now
	// yield, when set (SetYield), is the live-query window folds wait for.
	yield  atomic.Pointer[func() <-chan struct{}]
	cancel context.CancelFunc
	done   chan struct{}
}

// tracked is a campaign whose answers go through the journal.
type tracked struct {
	waiting  map[string]struct{} // hosts owing an answer (pending or sent)
	sum      Summary
	inflight int       // answers being appended
	closing  bool      // being expired: answers take the SQLite path
	doneAt   time.Time // when its last answer was journaled
	inSQLite bool      // the fold completed it before doneAt was set
}

// journalRecord is one answer in the journal.
type journalRecord struct {
	Campaign string          `json:"c"`
	Host     string          `json:"h"`
	Status   string          `json:"s"`
	Error    string          `json:"e,omitempty"`
	RowCount int             `json:"n"`
	Time     int64           `json:"t"`
	Rows     json.RawMessage `json:"r,omitempty"` // absent for errors
	Columns  json.RawMessage `json:"k,omitempty"` // absent without column order
}

// appendJournalRecord encodes q by hand: its rows are JSON already.
func appendJournalRecord(b []byte, q *resultReq) []byte {
	b = append(b, `{"c":`...)
	b = osquery.AppendString(b, q.campaignID)
	b = append(b, `,"h":`...)
	b = osquery.AppendString(b, q.hostID)
	b = append(b, `,"s":`...)
	b = osquery.AppendString(b, q.r.Status)
	if q.r.Error != "" {
		b = append(b, `,"e":`...)
		b = osquery.AppendString(b, q.r.Error)
	}
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, int64(q.rowCount), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, ts(q.r.Time), 10)
	if s, ok := q.rowsJSON.(string); ok {
		b = append(b, `,"r":`...)
		b = append(b, s...)
	}
	if s, ok := q.columnsJSON.(string); ok {
		b = append(b, `,"k":`...)
		b = append(b, s...)
	}
	return append(b, '}')
}

func decodeJournalRecord(raw []byte) (*resultReq, error) {
	var rec journalRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	if rec.Campaign == "" || rec.Host == "" || (rec.Status != StatusOK && rec.Status != StatusError) {
		return nil, fmt.Errorf("incomplete answer (campaign %q, host %q, status %q)", rec.Campaign, rec.Host, rec.Status)
	}
	q := &resultReq{campaignID: rec.Campaign, hostID: rec.Host, rowCount: rec.RowCount,
		r: Result{Status: rec.Status, Error: rec.Error, Time: fromTS(rec.Time)}}
	if rec.Rows != nil {
		q.rowsJSON = string(rec.Rows)
	}
	if rec.Columns != nil {
		q.columnsJSON = string(rec.Columns)
	}
	return q, nil
}

// openJournal opens the journal in dir, folds what a previous run left in
// it, and starts the folder.
func (db *DB) openJournal(ctx context.Context, dir string) error {
	lock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("state: opening the answer journal: %w", err)
	}
	w, err := wal.Open(wal.Options{Dir: dir, Logger: db.logger.With("log", "answers"), SegmentBytes: journalSegmentBytes})
	if err != nil {
		lock.Close()
		return fmt.Errorf("state: opening the answer journal: %w", err)
	}
	j := &journal{wal: w, lock: lock, now: func() time.Time { return db.now() }, camps: map[string]*tracked{}, foldedCh: make(chan struct{}), urgent: make(chan struct{}, 1), done: make(chan struct{})}
	j.idle = sync.NewCond(&j.mu)
	// The replay: nothing is tracked, so completions take the fold's time.
	pos, replayed := w.Start(), 0
	for !j.caughtUp(w.End()) {
		recs, next, err := w.Read(ctx, pos, journalReadBytes)
		if err == nil {
			err = db.fold(ctx, j, recs, next)
		}
		if err != nil {
			w.Close()
			lock.Close()
			return fmt.Errorf("state: replaying the answer journal: %w", err)
		}
		pos, replayed = next, replayed+len(recs)
	}
	if replayed > 0 {
		db.logger.Info("folded live-query answers left in the journal", "answers", replayed)
	}
	fctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	db.journal = j
	go db.foldLoop(fctx, j, w.Start())
	return nil
}

// closeJournal stops taking answers, folds what was journaled (for up to
// a few seconds; the rest is folded at the next Open) and closes it.
func (db *DB) closeJournal() error {
	j := db.journal
	if j == nil {
		return nil
	}
	j.mu.Lock()
	j.closed = true
	for j.inflightLocked() > 0 {
		j.idle.Wait()
	}
	j.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := j.settle(ctx)
	cancel()
	if err != nil {
		db.logger.Warn("closing with live-query answers not yet folded; the next start folds them", "err", err)
	}
	j.cancel()
	<-j.done
	err = j.wal.Close()
	if j.lock != nil {
		j.lock.Close()
	}
	return err
}

func (j *journal) inflightLocked() int {
	n := 0
	for _, t := range j.camps {
		n += t.inflight
	}
	return n
}

// track starts journaling the answers to c, just created.
func (j *journal) track(c Campaign) {
	t := &tracked{waiting: make(map[string]struct{}, len(c.Hosts)), sum: c.Summary}
	for _, h := range c.Hosts {
		if h.Status == StatusPending || h.Status == StatusSent {
			t.waiting[h.HostID] = struct{}{}
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.closed {
		j.camps[c.ID] = t
	}
}

// record journals q when its campaign is tracked; handled is false when it
// is not (the caller takes the SQLite path).
func (j *journal) record(ctx context.Context, q *resultReq) (handled bool, err error) {
	j.mu.Lock()
	t := j.camps[q.campaignID]
	if j.closed || t == nil || t.closing {
		j.mu.Unlock()
		return false, nil
	}
	if _, ok := t.waiting[q.hostID]; !ok {
		j.mu.Unlock()
		return true, nil // not a target, or answered already: not recorded
	}
	delete(t.waiting, q.hostID) // a second answer arriving meanwhile is not recorded
	t.inflight++
	j.mu.Unlock()

	// Not cut short by the request's end: an append that ctx interrupted
	// might still be committed, and whether it was must be known.
	err = j.wal.Append(context.WithoutCancel(ctx), appendJournalRecord(nil, q))
	now := j.now()

	j.mu.Lock()
	defer j.mu.Unlock()
	t.inflight--
	if t.inflight == 0 {
		j.idle.Broadcast()
	}
	if err != nil {
		t.waiting[q.hostID] = struct{}{}
		return true, err
	}
	q.recorded = true
	t.sum.Pending--
	if q.r.Status == StatusOK {
		t.sum.OK++
	} else {
		t.sum.Error++
	}
	if t.sum.Pending == 0 {
		q.completed = true
		t.doneAt = now
		if t.inSQLite {
			delete(j.camps, q.campaignID)
		}
	}
	return true, nil
}

// summary is a tracked campaign's summary: what SQLite shows once its
// answers are folded. Not while it is expired: answers then go to SQLite.
func (j *journal) summary(id string) (Summary, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.camps[id]
	if t == nil || t.closing {
		return Summary{}, false
	}
	return t.sum, true
}

// answered reports whether host's answer to a tracked campaign is
// journaled (or being journaled), or the campaign is complete: SQLite
// may still show it pending.
func (j *journal) answered(campaignID, hostID string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.camps[campaignID]
	if t == nil {
		return false
	}
	_, waiting := t.waiting[hostID]
	return !waiting
}

// closeCampaign sends further answers to id the SQLite path and waits for
// those being journaled; settle then folds them.
func (j *journal) closeCampaign(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := j.camps[id]
	if t == nil {
		return
	}
	t.closing = true
	for t.inflight > 0 {
		j.idle.Wait()
	}
}

func (j *journal) forget(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.camps, id)
}

// caughtUp reports whether every answer journaled before end is folded:
// the released position reaches it (Release moves past finished
// segments, so it reaches end exactly, as ingest's WaitDrained relies on).
func (j *journal) caughtUp(end wal.Pos) bool { return !j.wal.Start().Less(end) }

// settle waits until every answer journaled before the call is folded.
func (j *journal) settle(ctx context.Context) error {
	end := j.wal.End()
	for {
		j.foldMu.Lock()
		ch := j.foldedCh
		j.foldMu.Unlock()
		if j.caughtUp(end) {
			return nil
		}
		select {
		case j.urgent <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-j.done:
			return fmt.Errorf("state: waiting for live-query answers to be written: %w", errClosed)
		case <-ctx.Done():
			return fmt.Errorf("state: waiting for live-query answers to be written: %w", ctx.Err())
		}
	}
}

// Settle waits until every live-query answer recorded so far is in the
// state's tables. Reads of a campaign do it themselves; a caller about to
// read under a lock of its own can do the wait before taking it.
func (db *DB) Settle(ctx context.Context) error { return db.settle(ctx) }

// settle is journal.settle, when there is a journal.
func (db *DB) settle(ctx context.Context) error {
	if db.journal == nil {
		return nil
	}
	return db.journal.settle(ctx)
}

// Folding waits while answers keep coming (foldQuiet without one ends
// the wait, unless a live query's window is open: SetYield), and
// foldMaxDelay bounds it (longer than a live query to thousands of
// long-polling agents takes), unless a reader is waiting (settle): the
// answers are durable in the journal, and while thousands of agents
// answer a live query the fold's writes would take a share of the cores
// their answers need.
const (
	foldQuiet    = 100 * time.Millisecond
	foldMaxDelay = 5 * time.Second
)

func (db *DB) foldLoop(ctx context.Context, j *journal, pos wal.Pos) {
	defer close(j.done)
	backoff := minBackoff
	for ctx.Err() == nil {
		recs, next, err := j.wal.Read(ctx, pos, journalReadBytes) // waits for one
		if err == nil {
			j.linger(ctx)
		}
		for err == nil {
			if err = db.foldRetrying(ctx, j, recs, next); err != nil {
				break
			}
			pos, backoff = next, minBackoff
			if j.caughtUp(j.wal.End()) {
				break
			}
			recs, next, err = j.wal.Read(ctx, pos, journalReadBytes)
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, wal.ErrClosed) {
			continue
		}
		// The answers were acknowledged: keep trying (settle waits).
		db.logger.Error("reading the answer journal; retrying", "at", pos, "err", err, "retry_in", backoff)
		backOff(ctx, &backoff)
	}
}

// Retries of the journal's reads and folds wait from minBackoff, doubling
// up to maxBackoff.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// backOff waits *d, or until ctx ends, and doubles *d up to maxBackoff.
func backOff(ctx context.Context, d *time.Duration) {
	select {
	case <-time.After(*d):
	case <-ctx.Done():
	}
	*d = min(2**d, maxBackoff)
}

// linger waits while answers keep coming, and while a live query's
// window is open (SetYield), up to foldMaxDelay, or until a reader asks
// for them (settle).
func (j *journal) linger(ctx context.Context) {
	deadline := time.Now().Add(foldMaxDelay)
	last := j.wal.Stats().Records
	t := time.NewTimer(foldQuiet)
	defer t.Stop()
	var win <-chan struct{} // the window waited for, after a pause
	for {
		select {
		case <-j.urgent:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		case <-win:
			t.Stop()
		}
		now := time.Now()
		if !now.Before(deadline) {
			return
		}
		if n := j.wal.Stats().Records; n != last || win != nil {
			// Answers came, or the window closed: wait for a pause again.
			last, win = n, nil
			t.Reset(foldQuiet)
			continue
		}
		// A pause in the answers is their end, unless a live query's
		// window is open: the machine's other work (or a stolen core)
		// stalled them for a moment, and a fold now would take the
		// cores from the rest.
		if win = j.window(); win == nil {
			return
		}
		t.Reset(deadline.Sub(now))
	}
}

// window is the live-query window folds wait for, nil when none is open.
func (j *journal) window() <-chan struct{} {
	if f := j.yield.Load(); f != nil {
		return (*f)()
	}
	return nil
}

// SetYield makes the folding of journaled answers wait while yield
// returns a channel, until it closes (control's live-query window, as
// ingest's drainer and detection do), within the usual bound of 5 s; a
// reader (settle) still has them folded at once. Without the journal
// (PostgreSQL) it does nothing.
func (db *DB) SetYield(yield func() <-chan struct{}) {
	if db.journal != nil && yield != nil {
		db.journal.yield.Store(&yield)
	}
}

// foldRetrying folds until it succeeds or ctx ends: the answers were
// acknowledged, so they are never dropped.
func (db *DB) foldRetrying(ctx context.Context, j *journal, recs [][]byte, next wal.Pos) error {
	backoff := minBackoff
	for {
		err := db.fold(ctx, j, recs, next)
		if err == nil || ctx.Err() != nil {
			return err // after ctx ends, the next Open folds them
		}
		db.logger.Error("writing journaled live-query answers; retrying", "answers", len(recs), "err", err, "retry_in", backoff)
		backOff(ctx, &backoff)
	}
}

// fold writes journaled answers into campaign_hosts in one transaction,
// releases them and wakes settle's waiters.
func (db *DB) fold(ctx context.Context, j *journal, recs [][]byte, next wal.Pos) error {
	batch := make([]*resultReq, 0, len(recs))
	for _, raw := range recs {
		q, err := decodeJournalRecord(raw)
		if err != nil {
			// Only a bug or a corruption the checksum missed gets here.
			db.logger.Error("dropping an undecodable journaled answer", "err", err)
			continue
		}
		batch = append(batch, q)
	}
	doneAt := func(id string) time.Time {
		j.mu.Lock()
		defer j.mu.Unlock()
		if t := j.camps[id]; t != nil && !t.doneAt.IsZero() {
			return t.doneAt
		}
		return db.now()
	}
	// An update by primary key of validated values has nothing SQLite
	// could refuse for the answer's sake: an error is SQLite failing (a
	// full disk), and the whole batch is tried again, never dropped.
	if err := db.writeResults(ctx, batch, doneAt); err != nil {
		return err
	}
	j.mu.Lock()
	for _, q := range batch {
		t := j.camps[q.campaignID]
		if !q.completed || t == nil {
			continue
		}
		if t.doneAt.IsZero() {
			t.inSQLite = true // its last answer's append has not returned yet
		} else {
			delete(j.camps, q.campaignID)
		}
	}
	j.mu.Unlock()
	if err := j.wal.Release(next); err != nil {
		db.logger.Error("releasing folded answers", "err", err)
	}
	j.foldMu.Lock()
	close(j.foldedCh)
	j.foldedCh = make(chan struct{})
	j.foldMu.Unlock()
	return nil
}
