package state

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Results are group-committed like claims: a live query to thousands of
// long-polling hosts brings their answers within milliseconds of each
// other, and one write transaction (with one completion check per
// campaign) for a batch replaces a transaction per host, which queued the
// single SQLite writer for seconds.

const maxResultBatch = 1000

type resultReq struct {
	campaignID, hostID string
	r                  Result
	rowsJSON           any // NULL for errors
	columnsJSON        any // NULL without column order
	rowCount           int
	recorded           bool
	completed          bool
	err                error
	ready              chan struct{}
}

type resultWriter struct {
	reqs chan *resultReq
	stop chan struct{}
	done chan struct{}
}

func (db *DB) startResultWriter() {
	db.results = &resultWriter{reqs: make(chan *resultReq), stop: make(chan struct{}), done: make(chan struct{})}
	go db.resultLoop()
}

func (db *DB) stopResultWriter() {
	if db.results == nil {
		return
	}
	close(db.results.stop)
	<-db.results.done
}

// submitResult hands one answer to the writer and waits for its batch.
func (db *DB) submitResult(ctx context.Context, q *resultReq) error {
	q.ready = make(chan struct{})
	select {
	case db.results.reqs <- q:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.results.stop:
		return errClosed
	}
	<-q.ready // the batch is short; its commit is what the caller waits for
	return q.err
}

func (db *DB) resultLoop() {
	defer close(db.results.done)
	for {
		var batch []*resultReq
		select {
		case q := <-db.results.reqs:
			batch = append(batch, q)
		case <-db.results.stop:
			return
		}
	drain:
		for len(batch) < maxResultBatch {
			select {
			case q := <-db.results.reqs:
				batch = append(batch, q)
			default:
				break drain
			}
		}
		db.resultBatch(batch)
	}
}

// recordResultSQL updates one host's row by primary key; whether its
// campaign is still open is checked once per campaign and batch, inside
// the same transaction (where the campaign row is locked).
const recordResultSQL = `UPDATE campaign_hosts SET status = ?, error = ?, rows_json = ?, columns_json = ?, row_count = ?, updated_at = ?
	WHERE campaign_id = ? AND host_id = ? AND status IN (?, ?)`

func (db *DB) resultBatch(batch []*resultReq) {
	defer func() {
		for _, q := range batch {
			close(q.ready)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := db.writeResults(ctx, batch, nil)
	if err == nil || len(batch) == 1 {
		for _, q := range batch {
			q.err = err
		}
		return
	}
	// One bad answer, or (PostgreSQL) a deadlock with a concurrent claim,
	// must not fail the others: retry each on its own.
	for _, q := range batch {
		q.err = db.writeResults(ctx, []*resultReq{q}, nil)
	}
}

// writeResults records a batch in one transaction; on error nothing is
// recorded and every outcome is reset. A campaign completed by the batch
// gets doneAt's time (the journal's: when its last answer was journaled),
// or the commit's without doneAt.
func (db *DB) writeResults(ctx context.Context, batch []*resultReq, doneAt func(campaignID string) time.Time) error {
	for _, q := range batch {
		q.recorded, q.completed = false, false
	}
	var ids []string
	for _, q := range batch {
		ids = append(ids, q.campaignID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	err := db.tx(ctx, func(tx *sql.Tx) error {
		// Campaign rows locked in a fixed order: two batches never wait on
		// each other in a cycle. Answers to a completed campaign (timed
		// out) are not recorded.
		open := make(map[string]bool, len(ids))
		for _, id := range ids {
			if err := db.lockCampaign(ctx, tx, id); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM campaigns WHERE id = ? AND completed_at = 0`, id).Scan(&n); err != nil {
				return err
			}
			open[id] = n == 1
		}
		stmt, err := tx.PrepareContext(ctx, recordResultSQL)
		if err != nil {
			return err
		}
		defer stmt.Close()
		last := map[string]*resultReq{} // campaign -> its last recorded answer
		for _, q := range batch {
			if !open[q.campaignID] {
				continue
			}
			res, err := stmt.ExecContext(ctx, q.r.Status, q.r.Error, q.rowsJSON, q.columnsJSON, q.rowCount, ts(q.r.Time),
				q.campaignID, q.hostID, StatusPending, StatusSent)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				q.recorded = true
				last[q.campaignID] = q
			}
		}
		for _, id := range ids {
			q := last[id]
			if q == nil {
				continue
			}
			// Completed when written: answers can wait for the writer.
			at := db.now()
			if doneAt != nil {
				at = doneAt(id)
			}
			done, err := completeIfDone(ctx, tx, id, at)
			if err != nil {
				return err
			}
			q.completed = done
		}
		return nil
	})
	if err != nil {
		for _, q := range batch {
			q.recorded, q.completed = false, false
		}
		return fmt.Errorf("state: recording %d campaign results: %w", len(batch), err)
	}
	return nil
}

// MarkSent marks the hosts' queries of a campaign sent when they were
// handed out from a server's memory (see control); hosts whose status
// is no longer pending (answered, timed out) are left alone. One
// statement per host, by primary key, in one transaction: an IN-list
// over the campaign made SQLite walk the campaign's pending rows for
// every batch.
func (db *DB) MarkSent(ctx context.Context, campaignID string, hostIDs []string, now time.Time) error {
	if len(hostIDs) == 0 {
		return nil
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE campaign_hosts SET status = ?, updated_at = ?
			WHERE campaign_id = ? AND host_id = ? AND status = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		t := ts(now)
		for _, h := range hostIDs {
			if _, err := stmt.ExecContext(ctx, StatusSent, t, campaignID, h, StatusPending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: marking %d hosts of campaign %q sent: %w", len(hostIDs), campaignID, err)
	}
	return nil
}
