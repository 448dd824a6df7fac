package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Claiming pending queries is group-committed: when a live query starts,
// every targeted host's held distributed/read wakes at once, and one
// UPDATE for all of them replaces a write transaction per host (with
// 1,000 long-polling hosts this took the hand-out from seconds to a few
// statements).

const maxClaimBatch = 500

type claimReq struct {
	hostID string
	now    time.Time
	out    map[string]string
	err    error
	ready  chan struct{}
}

type claimer struct {
	reqs chan *claimReq
	stop chan struct{}
	done chan struct{}
}

func (db *DB) startClaimer() {
	db.claims = &claimer{reqs: make(chan *claimReq), stop: make(chan struct{}), done: make(chan struct{})}
	go db.claimLoop()
	db.startResultWriter()
}

func (db *DB) stopClaimer() {
	db.stopResultWriter()
	if db.claims == nil {
		return
	}
	close(db.claims.stop)
	<-db.claims.done
}

var errClosed = errors.New("state: closed")

// claim marks the host's pending queries of running campaigns sent and
// returns them (campaign id -> SQL); each is handed out once, also
// between replicas (the UPDATE is atomic).
func (db *DB) claim(ctx context.Context, hostID string, now time.Time) (map[string]string, error) {
	r := &claimReq{hostID: hostID, now: now, ready: make(chan struct{})}
	select {
	case db.claims.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-db.claims.stop:
		return nil, errClosed
	}
	<-r.ready // the batch is short; answering it is what the caller waits for
	return r.out, r.err
}

func (db *DB) claimLoop() {
	defer close(db.claims.done)
	for {
		var batch []*claimReq
		select {
		case r := <-db.claims.reqs:
			batch = append(batch, r)
		case <-db.claims.stop:
			return
		}
	drain:
		for len(batch) < maxClaimBatch {
			select {
			case r := <-db.claims.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.claimBatch(batch)
	}
}

func (db *DB) claimBatch(batch []*claimReq) {
	defer func() {
		for _, r := range batch {
			close(r.ready)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Two reads of one host in a batch: the first gets the queries.
	first := map[string]*claimReq{}
	hosts := make([]any, 0, len(batch))
	now := batch[0].now
	for _, r := range batch {
		if _, ok := first[r.hostID]; !ok {
			first[r.hostID] = r
			hosts = append(hosts, r.hostID)
		}
		if r.now.Before(now) {
			now = r.now
		}
	}
	fail := func(err error) {
		for _, r := range batch {
			r.err = fmt.Errorf("state: taking pending queries of %q: %w", r.hostID, err)
		}
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(hosts)), ",")
	args := append([]any{StatusSent, ts(now), StatusPending}, hosts...)
	args = append(args, ts(now))
	rows, err := db.w.QueryContext(ctx, `UPDATE campaign_hosts SET status = ?, updated_at = ?
		WHERE status = ? AND host_id IN (`+marks+`)
		AND campaign_id IN (SELECT id FROM campaigns WHERE completed_at = 0 AND deadline > ?)
		RETURNING campaign_id, host_id`, args...)
	if err != nil {
		fail(err)
		return
	}
	claimed := map[string][]string{} // host -> campaign ids
	campaigns := map[string]string{}
	for rows.Next() {
		var cid, hid string
		if err := rows.Scan(&cid, &hid); err != nil {
			rows.Close()
			fail(err)
			return
		}
		claimed[hid] = append(claimed[hid], cid)
		campaigns[cid] = ""
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		fail(err)
		return
	}
	for cid := range campaigns {
		var q string
		if err := db.r.QueryRowContext(ctx, `SELECT sql FROM campaigns WHERE id = ?`, cid).Scan(&q); err != nil {
			fail(fmt.Errorf("reading campaign %q: %w", cid, err))
			return
		}
		campaigns[cid] = q
	}
	for hid, r := range first {
		if len(claimed[hid]) == 0 {
			continue
		}
		r.out = make(map[string]string, len(claimed[hid]))
		for _, cid := range claimed[hid] {
			r.out[cid] = campaigns[cid]
		}
	}
}
