package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest/wal"
)

// Drainer tuning. Decoded rows take several times the bytes of their
// JSON, and two batches are in memory at once (one appending, the next
// decoded), so drainReadBytes is what bounds the drainer's memory; 4 MiB
// (about 8,000 lines) is big enough that per-batch costs (transaction,
// duplicate check) stay small next to the rows.
//
// Each append has a fixed cost (a transaction, the duplicate check, the
// Appenders): appending a few records at a time, as a trickle of traffic
// gives, took 10-15% of the server's CPU at 10,000 agents sending 320
// lines/s. After
// a read under drainSmallBytes the reader waits drainLinger for more to
// commit. The lines are durable in the WAL and acknowledged meanwhile;
// only the store sees them up to drainLinger later.
const (
	drainReadBytes  = 4 << 20 // WAL bytes read per store batch
	drainSmallBytes = 256 << 10
	drainLinger     = 100 * time.Millisecond
	drainMaxBackoff = 5 * time.Second
)

// Run drains the WAL into the Appender until ctx ends: it reads committed
// records (first those left from before a restart: the replay), decodes
// them as Log would without a WAL, appends many requests as one batch and
// releases the records once the store has them. Reading and decoding the
// next records overlaps with appending the current ones. A store failure
// is retried with backoff, never dropped; a batch the store refuses as
// invalid is retried request by request and only the refused requests are
// dropped (counted in Stats.StoreRejected, logged). Run returns nil when
// ctx ends or the WAL is closed. Without a WAL it returns at once.
func (i *Ingester) Run(ctx context.Context) error {
	if i.wal == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	// Unbuffered: the reader decodes the next batch while the current one
	// is appended, and waits with it; no third batch piles up.
	decoded := make(chan *drainBatch)
	defer func() {
		cancel()
		for range decoded { // wait for the reader to stop
		}
	}()
	readErr := make(chan error, 1)
	go func() {
		defer close(decoded)
		pos := i.wal.Start()
		small := false
		for {
			if small {
				select {
				case <-time.After(drainLinger):
				case <-ctx.Done():
					readErr <- nil
					return
				}
			}
			if !i.standAside(ctx) {
				readErr <- nil
				return
			}
			recs, next, err := i.wal.Read(ctx, pos, drainReadBytes)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, wal.ErrClosed) {
					err = nil
				}
				readErr <- err
				return
			}
			small = recordBytes(recs) < drainSmallBytes
			d := i.decodeRecords(ctx, recs)
			d.next = next
			pos = next
			select {
			case decoded <- d:
			case <-ctx.Done():
				readErr <- nil
				return
			}
		}
	}()
	for d := range decoded {
		// A window may have opened since the batch was read.
		if !i.standAside(ctx) {
			return nil
		}
		if err := i.drain(ctx, d); err != nil {
			return nil // ctx ended while retrying
		}
		if err := i.wal.Release(d.next); err != nil {
			i.log.Error("releasing WAL records", "err", err)
		}
		i.drained.Lock()
		close(i.drainedCh)
		i.drainedCh = make(chan struct{})
		i.drained.Unlock()
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("ingest: reading the WAL: %w", err)
	}
	return nil
}

// standAside waits while Options.Yield asks the drainer to; false when
// ctx ended meanwhile.
func (i *Ingester) standAside(ctx context.Context) bool {
	if i.yield == nil {
		return true
	}
	ch := i.yield()
	if ch == nil {
		return true
	}
	start := i.now()
	select {
	case <-ch:
	case <-ctx.Done():
		return false
	}
	i.stats.add(&stats{yielded: i.now().Sub(start)})
	return true
}

func recordBytes(recs [][]byte) int {
	n := 0
	for _, r := range recs {
		n += len(r)
	}
	return n
}

// pendingBatch is the decoded batch of one WAL record.
type pendingBatch struct {
	host  vigil.Host
	batch vigil.Batch
	lines int
}

// drainBatch is what one WAL read decodes to.
type drainBatch struct {
	parts []pendingBatch
	all   vigil.Batch
	lines int
	next  wal.Pos
	// write appends all when the store converted it ahead (preparer);
	// prepErr is why it could not.
	write   func(context.Context) error
	prepErr error
}

// preparer is a store that converts a batch ahead of writing it
// (store/duckdb): the drainer's reader converts the next batch while the
// store writes the current one.
type preparer interface {
	Prepare(vigil.Batch) (func(context.Context) error, error)
}

func (i *Ingester) decodeRecords(ctx context.Context, recs [][]byte) *drainBatch {
	d := &drainBatch{parts: make([]pendingBatch, 0, len(recs))}
	nr, ne := 0, 0
	for _, raw := range recs {
		// A batch takes a good part of a second to decode at 4 MiB: a
		// window opening meanwhile stops it between records. Once ctx
		// ends the rest is decoded without waiting (the caller drops it).
		i.standAside(ctx)
		r, err := decodeRecord(raw)
		if err != nil {
			// Only a bug or disk corruption the checksum missed gets here.
			i.log.Error("dropping an undecodable WAL record", "err", err)
			i.stats.add(&stats{storeRejected: 1})
			continue
		}
		b, accepted, err := i.decode(r.host, r.logType, r.lines)
		if err != nil {
			i.log.Warn("dropping a WAL record", "host_id", r.host.ID, "err", err)
			continue
		}
		d.parts = append(d.parts, pendingBatch{host: r.host, batch: b, lines: accepted})
		nr += len(b.Results)
		ne += len(b.Events)
		d.lines += accepted
	}
	// One copy of the rows: the merged batch, sized once, and the parts
	// as windows on it (their own arrays become garbage at once).
	d.all.Results = make([]vigil.ResultRow, 0, nr)
	d.all.Events = make([]vigil.Event, 0, ne)
	for k := range d.parts {
		p := &d.parts[k]
		r0, e0 := len(d.all.Results), len(d.all.Events)
		d.all.Results = append(d.all.Results, p.batch.Results...)
		d.all.Events = append(d.all.Events, p.batch.Events...)
		r1, e1 := len(d.all.Results), len(d.all.Events)
		p.batch = vigil.Batch{Results: d.all.Results[r0:r1:r1], Events: d.all.Events[e0:e1:e1]}
	}
	if p, ok := i.app.(preparer); ok && d.all.Len() > 0 {
		d.write, d.prepErr = p.Prepare(d.all)
	}
	return d
}

// drain appends a decoded WAL read; it returns only when the store has it
// (or refused parts of it as invalid), or with ctx's error.
func (i *Ingester) drain(ctx context.Context, d *drainBatch) error {
	var err error
	switch {
	case d.write != nil:
		err = i.retry(ctx, d.all.Len(), d.write)
	case errors.Is(d.prepErr, vigil.ErrInvalid):
		err = d.prepErr // retried request by request below
	default:
		err = i.appendRetry(ctx, d.all)
	}
	if err == nil {
		if d.all.Len() > 0 {
			i.stats.add(&stats{appended: int64(d.all.Len()), appendedLines: int64(d.lines), lastAppended: i.now()})
		}
		return nil
	}
	if !errors.Is(err, vigil.ErrInvalid) {
		return err
	}
	i.log.Error("store refused a merged batch; retrying request by request", "err", err)
	for _, p := range d.parts {
		err := i.appendRetry(ctx, p.batch)
		switch {
		case err == nil:
			i.stats.add(&stats{appended: int64(p.batch.Len()), appendedLines: int64(p.lines), lastAppended: i.now()})
		case errors.Is(err, vigil.ErrInvalid):
			i.log.Error("store refused a request's rows; dropping them", "host_id", p.host.ID, "rows", p.batch.Len(), "err", err)
			i.stats.add(&stats{storeRejected: 1})
		default:
			return err
		}
	}
	return nil
}

// appendRetry appends b, retrying failures other than ErrInvalid with
// backoff until ctx ends.
func (i *Ingester) appendRetry(ctx context.Context, b vigil.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return i.retry(ctx, b.Len(), func(ctx context.Context) error { return i.app.Append(ctx, b) })
}

// retry calls write, which appends rows, until it succeeds, fails with
// ErrInvalid or ctx ends, with backoff.
func (i *Ingester) retry(ctx context.Context, rows int, write func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := write(ctx)
		if err == nil || errors.Is(err, vigil.ErrInvalid) {
			return err
		}
		i.stats.add(&stats{unavailable: 1})
		i.log.Warn("store append failed; retrying", "rows", rows, "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, drainMaxBackoff)
	}
}

// WaitDrained waits until every record the WAL had committed when it was
// called is in the store (or was refused as invalid), or ctx ends. Tests
// and graceful shutdown use it.
func (i *Ingester) WaitDrained(ctx context.Context) error {
	if i.wal == nil {
		return nil
	}
	target := i.wal.End()
	for {
		i.drained.Lock()
		ch := i.drainedCh
		i.drained.Unlock()
		// Released records are in the store; Release moves past finished
		// segments, so the released position reaches End exactly.
		done := !i.wal.Start().Less(target)
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
