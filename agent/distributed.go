package agent

import (
	"context"
	"errors"
	"fmt"
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

// distributedLoop polls distributed/read every distributed_interval; a
// long-polling agent runs longPollLoop instead.
func (a *Agent) distributedLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		_, err := a.distributedOnce(ctx, time.Time{})
		if ctx.Err() != nil {
			return
		}
		wait := a.distributedInterval()
		if err != nil {
			a.baseLog.Warn("distributed query poll failed", "err", err, "retry_in", backoff)
			wait = min(backoff, wait)
			backoff = min(backoff*2, 5*time.Minute)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (a *Agent) distributedInterval() time.Duration {
	if n, ok := a.currentConfig().intOption("distributed_interval"); ok && n > 0 {
		return time.Duration(n) * time.Second
	}
	return a.opts.DistributedInterval
}

// holdMS is how long, in milliseconds, a long-polling agent asks the
// server to hold a request as its next read: LongPollWait, but not past
// until, when its next log send is due (longPollLoop); 0 when that time
// has come or the agent does not long poll.
func (a *Agent) holdMS(until time.Time) int {
	if !a.opts.LongPoll || until.IsZero() {
		return 0
	}
	return max(int(min(a.opts.LongPollWait, time.Until(until))/time.Millisecond), 0)
}

// distributedOnce reads pending queries (or takes those the last held
// request brought), runs them and writes the results. A long-polling
// agent asks for the read, and the write, to be held until its next log
// send is due (until). It returns how many queries it answered.
func (a *Agent) distributedOnce(ctx context.Context, until time.Time) (int, error) {
	var rd osquery.DistributedReadResponse
	if a.heldNext != nil {
		// The last held request came back with these.
		rd.Queries, a.heldNext = a.heldNext, nil
	} else {
		rctx := ctx
		wait := 0
		if a.opts.LongPoll {
			wait = max(a.holdMS(until), 1)
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(ctx, time.Duration(wait)*time.Millisecond+30*time.Second)
			defer cancel()
		}
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
	body := func(k string) any {
		w.NodeKey = k
		return w
	}
	if a.holdMS(until) == 0 {
		// Not held: osquery's protocol, or a log send is due and goes
		// first.
		if err := a.client.call(ctx, osquery.PathDistributedWrite, body, nil); err != nil {
			return 0, err
		}
		return len(rd.Queries), nil
	}
	// A Vigil server holds the write as the next read (one request per
	// query instead of two); osquery servers ignore vigil_wait_ms and
	// answer {}, and the next poll reads as before. Its own clock: the
	// queries may have run for long.
	wctx, cancel := context.WithTimeout(ctx, time.Until(until)+30*time.Second)
	defer cancel()
	q, err := a.client.callHeld(wctx, osquery.PathDistributedWrite, func(k string) any {
		w.VigilWait = max(a.holdMS(until), 1)
		return body(k)
	}, func() error { return nil })
	if err != nil {
		return 0, err
	}
	if len(q) > 0 {
		a.heldNext = q
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
