package wal

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// checkpointFile holds the released position, so that a restart does not
// read again what the store already has. It is written without fsync:
// losing it only means reading more again, which the store's event ids
// make harmless.
const checkpointFile = "released"

// Start is where the reader begins: the first record not released.
func (w *WAL) Start() Pos {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.released
}

// Read returns committed records from position from on, at least one and
// about maxBytes at most, and the position after them. It waits for a
// commit when there is nothing to read, until ctx ends or the log closes.
// The payloads are the caller's to keep.
func (w *WAL) Read(ctx context.Context, from Pos, maxBytes int) ([][]byte, Pos, error) {
	for {
		w.mu.Lock()
		closed, notify := w.closed, w.notify
		seg, size, ok := w.segmentAt(from)
		if !ok && len(w.segs) > 0 && from.Seg < w.segs[0].id {
			// Its segment was released and deleted: what follows is the
			// first segment left.
			from = Pos{Seg: w.segs[0].id}
			w.mu.Unlock()
			continue
		}
		if ok && from.Off >= size && seg != w.committed.Seg {
			// Past the end of a finished segment: go on with the next.
			from = w.nextSegment(seg)
			w.mu.Unlock()
			continue
		}
		w.mu.Unlock()
		if !ok {
			return nil, from, fmt.Errorf("wal: read: position %v is not in the log", from)
		}
		if from.Off < size {
			recs, next, err := w.readSegment(from, size, maxBytes)
			if err != nil {
				w.log.Error("unreadable records: skipping the rest of the segment", "at", from, "err", err)
				w.mu.Lock()
				if seg == w.committed.Seg {
					w.mu.Unlock()
					return nil, from, err
				}
				from = w.nextSegment(seg)
				w.mu.Unlock()
				continue
			}
			return recs, next, nil
		}
		if closed {
			return nil, from, ErrClosed
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, from, ctx.Err()
		}
	}
}

// segmentAt finds the segment of p and its committed size. Called with mu
// held.
func (w *WAL) segmentAt(p Pos) (uint64, int64, bool) {
	for _, s := range w.segs {
		if s.id == p.Seg {
			return s.id, s.size, true
		}
	}
	return 0, 0, false
}

// nextSegment is the start of the segment after id. Called with mu held.
func (w *WAL) nextSegment(id uint64) Pos {
	for _, s := range w.segs {
		if s.id > id {
			return Pos{Seg: s.id}
		}
	}
	return w.committed
}

func (w *WAL) readSegment(from Pos, size int64, maxBytes int) ([][]byte, Pos, error) {
	f, err := os.Open(filepath.Join(w.opts.Dir, segName(from.Seg)))
	if err != nil {
		return nil, from, err
	}
	defer f.Close()
	n := min(size-from.Off, int64(max(maxBytes, headerLen)))
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, from.Off); err != nil {
		return nil, from, err
	}
	if len(buf) >= headerLen {
		// A record bigger than maxBytes is read whole.
		if need := int64(headerLen) + int64(binary.LittleEndian.Uint32(buf)); need > n && need <= size-from.Off {
			buf = make([]byte, need)
			if _, err := f.ReadAt(buf, from.Off); err != nil {
				return nil, from, err
			}
		}
	}
	var recs [][]byte
	off := 0
	for off < len(buf) {
		payload, k, ok := parseRecord(buf[off:])
		if !ok {
			break
		}
		recs = append(recs, payload)
		off += k
	}
	if len(recs) == 0 {
		return nil, from, fmt.Errorf("%w at %v", errCorrupt, from)
	}
	return recs, Pos{Seg: from.Seg, Off: from.Off + int64(off)}, nil
}

// Release tells the log that every record before p is in the store.
// Segments wholly before p are deleted; the position is checkpointed.
func (w *WAL) Release(p Pos) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.released.Less(p) {
		return nil
	}
	w.released = p
	var firstErr error
	keep := w.segs[:0]
	for _, s := range w.segs {
		done := s.id < p.Seg || s.id == p.Seg && p.Off >= s.size
		if done && s.id != w.committed.Seg {
			if err := os.Remove(filepath.Join(w.opts.Dir, segName(s.id))); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("wal: deleting segment: %w", err)
			}
			continue
		}
		keep = append(keep, s)
	}
	w.segs = keep
	if w.released.Less(Pos{Seg: w.segs[0].id}) {
		w.released = Pos{Seg: w.segs[0].id}
	}
	if err := w.writeCheckpoint(w.released); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (w *WAL) writeCheckpoint(p Pos) error {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], p.Seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.Off))
	tmp := filepath.Join(w.opts.Dir, checkpointFile+".tmp")
	if err := os.WriteFile(tmp, b[:], 0o600); err != nil {
		return fmt.Errorf("wal: checkpoint: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(w.opts.Dir, checkpointFile)); err != nil {
		return fmt.Errorf("wal: checkpoint: %w", err)
	}
	return nil
}

// readCheckpoint returns the checkpointed position when it points into
// the recovered segments at a record boundary. Called from recover.
func (w *WAL) readCheckpoint() (Pos, bool) {
	b, err := os.ReadFile(filepath.Join(w.opts.Dir, checkpointFile))
	if err != nil || len(b) != 16 {
		return Pos{}, false
	}
	p := Pos{Seg: binary.LittleEndian.Uint64(b), Off: int64(binary.LittleEndian.Uint64(b[8:]))}
	for _, s := range w.segs {
		if s.id != p.Seg {
			continue
		}
		if p.Off < 0 || p.Off > s.size {
			return Pos{}, false
		}
		// Check that p is a record boundary by walking the segment.
		data, err := os.ReadFile(filepath.Join(w.opts.Dir, segName(s.id)))
		if err != nil {
			return Pos{}, false
		}
		off := int64(0)
		for off < p.Off {
			_, n, ok := parseRecord(data[off:])
			if !ok {
				return Pos{}, false
			}
			off += int64(n)
		}
		return p, off == p.Off
	}
	return Pos{}, false
}

// End is the position after the last committed record.
func (w *WAL) End() Pos {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}
