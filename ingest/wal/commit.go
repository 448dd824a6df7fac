package wal

import (
	"context"
	"fmt"
	"time"

	"github.com/vigilhq/vigil"
)

type request struct {
	payload []byte
	done    chan error
}

// Append writes one record and returns once it is durable (fsynced with
// its commit group). It fails with ErrFull, which wraps
// vigil.ErrUnavailable, when the log holds MaxBytes of unreleased records.
// If ctx ends first Append returns its error, but the record may still be
// committed (and later read).
func (w *WAL) Append(ctx context.Context, payload []byte) error {
	if len(payload) > MaxRecordBytes {
		return fmt.Errorf("wal: record of %d bytes, limit %d", len(payload), MaxRecordBytes)
	}
	size := int64(len(payload) + headerLen)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if used := w.inflight + w.unreleased(); used+size > w.opts.MaxBytes && used > 0 {
		w.stats.Full++
		w.mu.Unlock()
		return ErrFull
	}
	w.inflight += size
	w.mu.Unlock()

	r := &request{payload: payload, done: make(chan error, 1)}
	select {
	case w.reqs <- r:
	case <-w.quit:
		w.unreserve(size)
		return ErrClosed
	case <-ctx.Done():
		w.unreserve(size)
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		// The committer stopped; it may have answered just before.
		select {
		case err := <-r.done:
			return err
		default:
			w.unreserve(size)
			return ErrClosed
		}
	}
}

func (w *WAL) unreserve(size int64) {
	w.mu.Lock()
	w.inflight -= size
	w.mu.Unlock()
}

// committer gathers requests into groups: a group closes CommitInterval
// after its first record or when it reaches CommitBytes; its records are
// written with one write and made durable with one fsync.
func (w *WAL) committer() {
	defer close(w.done)
	var group []*request
	buf := make([]byte, 0, w.opts.CommitBytes+4096)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *request
		select {
		case first = <-w.reqs:
		case <-w.quit:
			// Commit what was handed over before Close.
			for {
				select {
				case r := <-w.reqs:
					group = append(group, r)
					continue
				default:
				}
				break
			}
			if len(group) > 0 {
				w.commit(group, buf[:0])
			}
			return
		}
		group = append(group[:0], first)
		size := len(first.payload) + headerLen
		timer.Reset(w.opts.CommitInterval)
	gather:
		for size < w.opts.CommitBytes {
			select {
			case r := <-w.reqs:
				group = append(group, r)
				size += len(r.payload) + headerLen
			case <-timer.C:
				break gather
			case <-w.quit:
				break gather
			}
		}
		timer.Stop()
		if b := w.commit(group, buf[:0]); cap(b) <= keepCommitBuf {
			buf = b // a group over CommitBytes grew it: keep the bigger one
		}
		for i := range group {
			group[i] = nil
		}
		group = group[:0]
	}
}

// keepCommitBuf bounds the group buffer the committer keeps between
// groups: big enough for the usual group plus a request of a few MiB.
const keepCommitBuf = 8 << 20

// commit writes and fsyncs one group, then answers its requests. It
// returns buf, grown if the group needed it.
func (w *WAL) commit(group []*request, buf []byte) []byte {
	for _, r := range group {
		buf = appendRecord(buf, r.payload)
	}
	err := w.writeSync(buf)
	w.mu.Lock()
	w.inflight -= int64(len(buf))
	if err == nil {
		w.committed.Off += int64(len(buf))
		w.segs[len(w.segs)-1].size = w.committed.Off
		w.stats.Records += int64(len(group))
		w.stats.Commits++
		w.stats.Bytes += int64(len(buf))
		// Rotate before readers hear of the commit, so that a reader that
		// reaches the end of a full segment finds it finished.
		if w.committed.Off >= w.opts.SegmentBytes {
			if rerr := w.startSegment(w.committed.Seg + 1); rerr != nil {
				w.log.Error("starting a new segment", "err", rerr)
			}
		}
		close(w.notify)
		w.notify = make(chan struct{})
	}
	w.mu.Unlock()
	if err != nil {
		w.log.Error("commit failed", "records", len(group), "err", err)
		err = fmt.Errorf("wal: commit: %w: %w", vigil.ErrUnavailable, err)
	}
	for _, r := range group {
		r.done <- err
	}
	return buf
}

// writeSync appends buf to the segment and fsyncs it. A failed write is
// cut off again so that the segment never holds a record that was not
// acknowledged before one that was.
func (w *WAL) writeSync(buf []byte) error {
	if _, err := w.file.Write(buf); err != nil {
		w.cutBack()
		return err
	}
	if err := w.file.Sync(); err != nil {
		w.cutBack()
		return err
	}
	return nil
}

func (w *WAL) cutBack() {
	w.mu.Lock()
	off := w.committed.Off
	w.mu.Unlock()
	if err := w.file.Truncate(off); err != nil {
		w.log.Error("cutting a failed write", "err", err)
	}
}
