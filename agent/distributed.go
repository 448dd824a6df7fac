package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/vigilhq/vigil/agent/table"
	"github.com/vigilhq/vigil/osquery"
)

// Distributed query statuses (osquery uses SQLite codes; 0 is success).
const (
	statusOK    = 0
	statusError = 1
)

// distributedLoop polls distributed/read. Without LongPoll it waits
// DistributedInterval between polls. With LongPoll it asks the server to
// hold the request open (vigil_wait_ms) and polls again right after each
// answer; a server that answers an empty read at once does not support it,
// and the agent falls back to the interval.
func (a *Agent) distributedLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		hold := a.holdWait()
		n, err := a.distributedOnce(ctx, hold)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case err != nil:
			a.baseLog.Warn("distributed query poll failed", "err", err, "retry_in", backoff)
			wait = min(backoff, a.distributedInterval())
			backoff = min(backoff*2, 5*time.Minute)
		case a.opts.LongPoll && (n > 0 || time.Since(start) >= hold/2):
			backoff = time.Second
			wait = 0
		default:
			backoff = time.Second
			wait = a.distributedInterval()
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

func (a *Agent) distributedInterval() time.Duration {
	if n, ok := a.currentConfig().intOption("distributed_interval"); ok && n > 0 {
		return time.Duration(n) * time.Second
	}
	return a.opts.DistributedInterval
}

// holdWait is how long a long-polling agent asks the server to hold
// distributed/read: LongPollWait, but no longer than logger_tls_period,
// since the held read occupies the agent's one connection and the next
// log send waits for it (newTransport). Each hold ends at a random point
// of its last quarter: agents that started together (a fleet coming back
// after a server restart) would otherwise send their logs in step; in
// step, 3,000 simulated agents saw a median log latency of 294 ms, and
// 3.8 ms with the jitter.
func (a *Agent) holdWait() time.Duration {
	d := min(a.opts.LongPollWait, a.loggerPeriod())
	return d - rand.N(d/4+1)
}

// distributedOnce reads pending queries, runs them and writes the results.
// With LongPoll the server may hold each request up to hold. It returns
// how many queries it answered.
func (a *Agent) distributedOnce(ctx context.Context, hold time.Duration) (int, error) {
	wait := 0
	rctx := ctx
	if a.opts.LongPoll {
		wait = max(int(hold/time.Millisecond), 1)
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, hold+30*time.Second)
		defer cancel()
	}
	if a.opts.LongPoll {
		// The read waits for a log send under way, and a log send for the
		// hold and, when it brings queries, for their answer: someone is
		// waiting for it (Agent.turn).
		if err := a.turn.take(ctx); err != nil {
			return 0, err
		}
		defer a.turn.give()
	}
	var rd osquery.DistributedReadResponse
	if a.heldNext != nil {
		// The last write was held and came back with these.
		rd.Queries, a.heldNext = a.heldNext, nil
	} else {
		err := a.client.call(rctx, osquery.PathDistributedRead, func(k string) any {
			return osquery.NodeRequest{NodeKey: k, VigilWait: wait}
		}, &rd)
		if err != nil {
			return 0, err
		}
	}
	if len(rd.Queries) == 0 {
		return 0, nil
	}
	w := a.runDistributed(ctx, rd)
	// A Vigil server holds the write as the next read (one request per
	// query instead of two); osquery servers ignore vigil_wait_ms and
	// answer {}, and the next poll reads as before. Not when a log send
	// waits for the connection: the hold would keep it waiting, and
	// agents woken by the same live query would all send their logs when
	// their holds end, at about the same time.
	if !a.turn.wanted() {
		w.VigilWait = wait
	}
	var wr osquery.DistributedWriteResponse
	err := a.client.call(rctx, osquery.PathDistributedWrite, func(k string) any {
		w.NodeKey = k
		return w
	}, &wr)
	if err != nil {
		return 0, err
	}
	if wr.VigilHeld && len(wr.Queries) > 0 {
		a.heldNext = wr.Queries
	}
	return len(rd.Queries), nil
}

// runDistributed runs each query (after its discovery query, if any) and
// builds the write request: rows, status 0 or 1, and the error text.
func (a *Agent) runDistributed(ctx context.Context, rd osquery.DistributedReadResponse) osquery.DistributedWriteRequest {
	w := osquery.DistributedWriteRequest{
		Queries:  map[string][]map[string]string{},
		Statuses: map[string]osquery.Int{},
		Messages: map[string]string{},
		Columns:  map[string][]string{},
	}
	ids := make([]string, 0, len(rd.Queries))
	for id := range rd.Queries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	maxBytes, used := a.maxResultBytes(), 0
	for _, id := range ids {
		if d, ok := rd.Discovery[id]; ok && d != "" {
			res, err := a.engine.Query(ctx, d)
			if err != nil || len(res.Rows) == 0 {
				continue // not for this host: osquery leaves it out
			}
		}
		// What is left of the body's bound: one huge result must not push
		// the whole write over the server's limit either.
		left := maxBytes - used
		res, err := a.engine.Query(table.WithMaxResultBytes(ctx, max(left, 1)), rd.Queries[id])
		if errors.Is(err, table.ErrResultTooLarge) {
			n := a.distTooLarge.Add(1)
			a.log.Warn("distributed query result over distributed_max_result_bytes; answered with an error", "id", id, "max", maxBytes, "left", left, "too_large_total", n)
			err = fmt.Errorf("%w (distributed_max_result_bytes %d, %d left for this query)", err, maxBytes, left)
		}
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				continue
			}
			w.Queries[id] = []map[string]string{}
			w.Statuses[id] = statusError
			w.Messages[id] = err.Error()
			used += len(id)*3 + len(w.Messages[id]) + 16
			continue
		}
		rows := res.Rows
		if rows == nil {
			rows = []map[string]string{}
		}
		used += len(id)*2 + 16
		for _, r := range rows {
			used += table.RowSize(r) + 1
		}
		w.Queries[id] = rows
		if len(rows) > 0 && len(res.Columns) > 0 {
			// The rows go out with their keys in the SELECT's order
			// (osquery.DistributedWriteRequest.MarshalJSON).
			w.Columns[id] = res.Columns
		}
		w.Statuses[id] = statusOK
		a.distAnswered.Add(1)
	}
	if len(w.Messages) == 0 {
		w.Messages = nil
	}
	if len(w.Columns) == 0 {
		w.Columns = nil
	}
	return w
}
