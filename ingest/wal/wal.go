// Package wal is ingest's write-ahead log: records (opaque bytes) are
// appended to segment files and acknowledged only once fsynced, in groups
// (one fsync per commit group, never one per record). A background reader
// (ingest's drainer) reads committed records in order and, once the store
// has them, releases them; whole segments are deleted only after that.
// At Open, a torn tail (the partial record a crash leaves) is cut off and
// logged, and every unreleased record is read again (automatic replay).
//
// ingest imports it for logs, and state for live-query answers
// (state/journal.go).
//
// Segment format: files named %016x.wal in Dir, each a sequence of records
//
//	[4 bytes little-endian payload length][4 bytes CRC-32C of length and payload][payload]
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
)

// Defaults for Options.
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultMaxBytes       = 1 << 30
	DefaultCommitInterval = 2 * time.Millisecond
	DefaultCommitBytes    = 256 << 10
	// MaxRecordBytes bounds one record.
	MaxRecordBytes = 64 << 20
)

const headerLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFull is returned by Append when the log holds MaxBytes of records the
// store has not confirmed yet. It wraps vigil.ErrUnavailable: the sender
// should retry later.
var ErrFull = fmt.Errorf("wal: full: %w", vigil.ErrUnavailable)

// ErrClosed is returned after Close.
var ErrClosed = fmt.Errorf("wal: closed: %w", vigil.ErrUnavailable)

// Options configures Open.
type Options struct {
	Dir    string       // created when missing
	Logger *slog.Logger // nil discards
	// SegmentBytes: a segment is closed and a new one started once it is
	// this large (default DefaultSegmentBytes).
	SegmentBytes int64
	// MaxBytes bounds the bytes of unreleased records; Append fails with
	// ErrFull beyond it (default DefaultMaxBytes).
	MaxBytes int64
	// CommitInterval is how long a commit group waits for more records
	// after its first (default DefaultCommitInterval).
	CommitInterval time.Duration
	// CommitBytes commits a group at once when it reaches this size
	// (default DefaultCommitBytes).
	CommitBytes int
}

// Pos is a position in the log: a segment and a byte offset in it.
type Pos struct {
	Seg uint64
	Off int64
}

// Less orders positions.
func (p Pos) Less(q Pos) bool { return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off }

func (p Pos) String() string { return fmt.Sprintf("%016x:%d", p.Seg, p.Off) }

// segment is one file of the log.
type segment struct {
	id   uint64
	size int64 // committed bytes
}

// WAL is a write-ahead log. Append is safe for concurrent use; Read and
// Release are meant for one reader.
type WAL struct {
	opts Options
	log  *slog.Logger

	reqs chan *request
	quit chan struct{}
	done chan struct{}

	mu        sync.Mutex
	segs      []segment // ascending; the last is the one being written
	file      *os.File  // the last segment, open for writing
	committed Pos       // end of the durable records
	released  Pos       // records before this are in the store
	inflight  int64     // bytes handed to the committer, not yet committed
	closed    bool
	notify    chan struct{} // closed and replaced at every commit
	stats     Stats
}

// Stats are counters of the log.
type Stats struct {
	Records   int64 // records committed since Open
	Commits   int64 // fsyncs of commit groups
	Bytes     int64 // bytes committed since Open
	Full      int64 // appends refused with ErrFull
	Pending   int64 // bytes of unreleased records
	Segments  int   // segment files
	CutBytes  int64 // bytes of torn or corrupt tails cut at Open
	Recovered int64 // records found at Open
}

// Open opens the log in opts.Dir, cutting a torn tail from each segment,
// and starts the committer.
func Open(opts Options) (*WAL, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("wal: open: empty dir: %w", vigil.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = DefaultCommitInterval
	}
	if opts.CommitBytes <= 0 {
		opts.CommitBytes = DefaultCommitBytes
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: open: %w", err)
	}
	w := &WAL{
		opts:   opts,
		log:    opts.Logger.With("component", "ingest.wal"),
		reqs:   make(chan *request, 1024),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		notify: make(chan struct{}),
	}
	if err := w.recover(); err != nil {
		return nil, err
	}
	go w.committer()
	return w, nil
}

func segName(id uint64) string { return fmt.Sprintf("%016x.wal", id) }

// recover scans the segments, cuts what does not check out and opens the
// last segment (or a new one) for writing.
func (w *WAL) recover() error {
	entries, err := os.ReadDir(w.opts.Dir)
	if err != nil {
		return fmt.Errorf("wal: open: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			w.log.Warn("ignoring a file that is not a segment", "file", e.Name())
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		path := filepath.Join(w.opts.Dir, segName(id))
		good, records, size, err := scanFile(path)
		if err != nil {
			return fmt.Errorf("wal: open: %w", err)
		}
		if good < size {
			w.log.Warn("cutting a torn or corrupt tail", "segment", segName(id), "kept_bytes", good, "cut_bytes", size-good, "kept_records", records)
			if err := os.Truncate(path, good); err != nil {
				return fmt.Errorf("wal: open: cutting %s: %w", path, err)
			}
			w.stats.CutBytes += size - good
		}
		w.stats.Recovered += records
		w.segs = append(w.segs, segment{id: id, size: good})
	}
	if len(w.segs) > 0 {
		w.released = Pos{Seg: w.segs[0].id}
		if p, ok := w.readCheckpoint(); ok {
			w.released = p
		}
		w.log.Info("recovered", "segments", len(w.segs), "records", w.stats.Recovered, "unreleased_bytes", w.unreleased(), "from", w.released)
	}
	next := uint64(1)
	if n := len(w.segs); n > 0 {
		next = w.segs[n-1].id + 1
	}
	// Always write into a fresh segment: the old ones stay as recovered.
	if err := w.startSegment(next); err != nil {
		return err
	}
	if len(w.segs) == 1 {
		// A new log: nothing before the first segment to release, so the
		// reader starts where the end is (a drain waiting for the released
		// position to reach the end has nothing to wait for).
		w.released = Pos{Seg: next}
	}
	// Recovered segments with nothing unreleased (a clean stop) go now:
	// no record will ever release them, and until the released position
	// reaches the fresh segment a drain (WaitDrained) could not finish.
	if len(w.segs) > 1 && w.unreleased() == 0 {
		return w.Release(Pos{Seg: next})
	}
	return nil
}

// scanFile returns the length of the valid prefix of a segment, the
// records in it and the file size.
func scanFile(path string) (good, records, size int64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	good, records = Scan(data)
	return good, records, int64(len(data)), nil
}

// Scan returns the length of the longest prefix of data made of whole,
// checksummed records, and how many records it holds.
func Scan(data []byte) (good, records int64) {
	off := 0
	for {
		_, n, ok := parseRecord(data[off:])
		if !ok {
			return int64(off), records
		}
		off += n
		records++
	}
}

// parseRecord parses the record at the start of b.
func parseRecord(b []byte) (payload []byte, n int, ok bool) {
	if len(b) < headerLen {
		return nil, 0, false
	}
	l := binary.LittleEndian.Uint32(b)
	if l > MaxRecordBytes || int64(len(b)-headerLen) < int64(l) {
		return nil, 0, false
	}
	sum := crc32.Update(crc32.Checksum(b[:4], castagnoli), castagnoli, b[headerLen:headerLen+int(l)])
	if sum != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, false
	}
	return b[headerLen : headerLen+int(l)], headerLen + int(l), true
}

// appendRecord appends the encoding of one record to b.
func appendRecord(b, payload []byte) []byte {
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[:], uint32(len(payload)))
	sum := crc32.Update(crc32.Checksum(h[:4], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:], sum)
	b = append(b, h[:]...)
	return append(b, payload...)
}

// startSegment creates segment id and makes it the one written. Called
// with mu held or before the committer starts.
func (w *WAL) startSegment(id uint64) error {
	path := filepath.Join(w.opts.Dir, segName(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wal: creating segment: %w", err)
	}
	if err := syncDir(w.opts.Dir); err != nil {
		f.Close()
		return err
	}
	if w.file != nil {
		if err := w.file.Close(); err != nil {
			w.log.Error("closing segment", "err", err)
		}
	}
	w.file = f
	w.segs = append(w.segs, segment{id: id})
	w.committed = Pos{Seg: id}
	if len(w.segs) == 1 {
		w.released = Pos{Seg: id}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: syncing directory: %w", err)
	}
	return nil
}

// Stats returns the log's counters.
func (w *WAL) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = w.inflight + w.unreleased()
	s.Segments = len(w.segs)
	return s
}

// Close stops the committer after the records already handed to it are
// committed, and closes the segment.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.quit)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.notify)
	if err := w.file.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

var errCorrupt = errors.New("wal: record does not check out")

// unreleased is the committed bytes not yet released. Called with mu held.
func (w *WAL) unreleased() int64 {
	var n int64
	for _, s := range w.segs {
		switch {
		case s.id < w.released.Seg:
		case s.id == w.released.Seg:
			n += max(0, s.size-w.released.Off)
		default:
			n += s.size
		}
	}
	return n
}
