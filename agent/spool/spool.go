// Package spool is the agent's durable on-disk queue: log lines wait here
// until the server has acknowledged them, across restarts and crashes.
//
// A spool is a directory of append-only segment files of checksummed
// records, each with its sequence number, and a small "head" file naming the
// first record not yet acknowledged. Appends are made durable by Sync, which
// group-commits: concurrent callers share one fsync. Acknowledged segments
// are deleted. When more than MaxRecords are pending the oldest are dropped
// and counted, as osquery's buffered_log_max.
//
// Only the agent runtime imports it.
package spool

import (
	"bufio"
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
)

// Defaults.
const (
	DefaultMaxRecords   = 1_000_000 // osquery's buffered_log_max
	DefaultSegmentBytes = 16 << 20
	DefaultMaxRecord    = 16 << 20
)

const (
	headerLen = 16 // length u32, crc32c u32, seq u64
	segExt    = ".seg"
	headFile  = "head"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned by Append for a record over MaxRecordBytes.
var ErrTooLarge = errors.New("spool: record too large")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool: closed")

// Options configures a Spool.
type Options struct {
	Dir string
	// MaxRecords bounds the pending records; beyond it the oldest are
	// dropped. 0 means DefaultMaxRecords, negative means unbounded.
	MaxRecords int
	// SegmentBytes is the size at which a new segment file is started.
	SegmentBytes int64
	// MaxRecordBytes is the largest record accepted.
	MaxRecordBytes int
	Logger         *slog.Logger
}

// Record is one spooled record.
type Record struct {
	Seq  uint64
	Data []byte
}

// Stats counts a spool's traffic since Open (Pending is current).
type Stats struct {
	Pending  uint64 `json:"pending"`
	Appended uint64 `json:"appended"`
	Acked    uint64 `json:"acked"`
	Dropped  uint64 `json:"dropped"` // oldest records dropped over MaxRecords
	Corrupt  uint64 `json:"corrupt"` // records lost to corruption found at Open
	Syncs    uint64 `json:"syncs"`
}

type segment struct {
	first uint64 // seq of its first record (from the file name)
	next  uint64 // seq after its last record
	size  int64
	path  string
}

type position struct {
	seq uint64 // seq of the record at off
	seg uint64 // first seq of the segment holding it
	off int64
}

// Spool is a durable FIFO of records. It is safe for concurrent use.
type Spool struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	segs      []*segment
	active    *os.File
	head      uint64 // first record not acknowledged or dropped
	next      uint64 // seq of the next appended record
	headDirty bool
	pos       *position // cached position of head, if known
	peekEnd   *position // position after the last Peek
	stats     Stats
	closed    bool

	syncMu sync.Mutex
	synced uint64 // every seq below this is on disk
}

// Open opens or creates the spool in opts.Dir, recovering from a crash:
// a torn or corrupt tail of the last segment is cut off, corruption in older
// segments loses the rest of that segment (counted in Stats.Corrupt).
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	if opts.MaxRecords == 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecord
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", opts.Dir, err)
	}
	s := &Spool{opts: opts, log: opts.Logger, next: 1}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) recover() error {
	names, err := filepath.Glob(filepath.Join(s.opts.Dir, "*"+segExt))
	if err != nil {
		return fmt.Errorf("spool: list segments: %w", err)
	}
	for _, p := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), segExt), 10, 64)
		if err != nil || first == 0 {
			s.log.Warn("spool: ignoring unexpected file", "path", p)
			continue
		}
		s.segs = append(s.segs, &segment{first: first, path: p})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].first < s.segs[j].first })
	for i, seg := range s.segs {
		last := i == len(s.segs)-1
		next, size, err := scanSegment(seg.path, seg.first)
		seg.next, seg.size = next, size
		if err != nil {
			st, _ := os.Stat(seg.path)
			if st != nil && st.Size() > size {
				s.log.Warn("spool: corrupt or torn records cut off", "path", seg.path, "valid_bytes", size, "file_bytes", st.Size(), "err", err)
				if err := os.Truncate(seg.path, size); err != nil {
					return fmt.Errorf("spool: truncate %s: %w", seg.path, err)
				}
			}
		}
		if !last {
			if nf := s.segs[i+1].first; nf > seg.next {
				s.stats.Corrupt += nf - seg.next
			}
		}
	}
	if n := len(s.segs); n > 0 {
		s.next = s.segs[n-1].next
	}
	s.head = 1
	if len(s.segs) > 0 {
		s.head = s.segs[0].first
	}
	if b, err := os.ReadFile(filepath.Join(s.opts.Dir, headFile)); err == nil {
		if h, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && h > s.head {
			s.head = h
		}
	}
	if s.head > s.next {
		// The head file says more was acknowledged than survived: keep
		// numbering after it so that seqs never repeat.
		s.next = s.head
	}
	s.synced = s.next
	s.stats.Pending = s.next - s.head
	s.removeAcked()
	return s.openActive()
}

// scanSegment validates the records of a segment and returns the seq after
// the last valid one and the byte size of the valid prefix.
func scanSegment(path string, first uint64) (next uint64, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return first, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	next = first
	var hdr [headerLen]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return next, size, nil
			}
			return next, size, fmt.Errorf("torn header at offset %d: %w", size, err)
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		seq := binary.LittleEndian.Uint64(hdr[8:])
		if seq != next || n > 1<<30 {
			return next, size, fmt.Errorf("bad record header at offset %d (seq %d, want %d)", size, seq, next)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return next, size, fmt.Errorf("torn record at offset %d: %w", size, err)
		}
		if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, buf) != sum {
			return next, size, fmt.Errorf("checksum mismatch at offset %d", size)
		}
		next++
		size += headerLen + int64(n)
	}
}

func (s *Spool) openActive() error {
	if n := len(s.segs); n > 0 && s.segs[n-1].size < s.opts.SegmentBytes && s.segs[n-1].next == s.next {
		f, err := os.OpenFile(s.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: open segment: %w", err)
		}
		s.active = f
		return nil
	}
	return s.rotate()
}

// rotate starts a new segment at s.next. Called with mu held.
func (s *Spool) rotate() error {
	if s.active != nil {
		// The old segment must be durable before later ones are trusted.
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("spool: sync segment: %w", err)
		}
		if err := s.active.Close(); err != nil {
			return fmt.Errorf("spool: close segment: %w", err)
		}
		s.active = nil
	}
	p := filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", s.next, segExt))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if d, err := os.Open(s.opts.Dir); err == nil {
		_ = d.Sync() // make the new name durable
		d.Close()
	}
	s.active = f
	s.segs = append(s.segs, &segment{first: s.next, next: s.next, path: p})
	return nil
}

// Append adds records and returns the seq of the last one. They are in the
// OS page cache when it returns; call Sync to make them durable.
func (s *Spool) Append(data ...[]byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	for _, d := range data {
		if len(d) > s.opts.MaxRecordBytes {
			return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(d), s.opts.MaxRecordBytes)
		}
	}
	for len(data) > 0 {
		seg := s.segs[len(s.segs)-1]
		if seg.size >= s.opts.SegmentBytes {
			if err := s.rotate(); err != nil {
				return 0, err
			}
			continue
		}
		// Fill this segment up to its size, at least one record.
		var buf []byte
		n := 0
		for n < len(data) && (n == 0 || seg.size+int64(len(buf)) < s.opts.SegmentBytes) {
			buf = appendRecord(buf, seg.next+uint64(n), data[n])
			n++
		}
		if _, err := s.active.Write(buf); err != nil {
			// A partial write leaves a torn tail; cut it so later
			// appends stay readable.
			_ = s.active.Truncate(seg.size)
			return 0, fmt.Errorf("spool: write: %w", err)
		}
		seg.size += int64(len(buf))
		seg.next += uint64(n)
		s.next = seg.next
		s.stats.Appended += uint64(n)
		data = data[n:]
	}
	s.enforceMax()
	s.stats.Pending = s.next - s.head
	return s.next - 1, nil
}

func appendRecord(buf []byte, seq uint64, data []byte) []byte {
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(len(data)))
	binary.LittleEndian.PutUint64(hdr[8:], seq)
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, data))
	buf = append(buf, hdr[:]...)
	return append(buf, data...)
}

// Sync makes every record appended before the call durable. Concurrent
// callers share one fsync (group commit).
func (s *Spool) Sync() error {
	s.mu.Lock()
	target := s.next
	s.mu.Unlock()
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= target {
		return nil // an fsync that started after our append covered it
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	f, upto := s.active, s.next
	headDirty := s.headDirty
	s.headDirty = false
	head := s.head
	s.mu.Unlock()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		// ErrClosed: a rotation fsynced and closed it meanwhile.
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.synced = upto
	s.mu.Lock()
	s.stats.Syncs++
	s.mu.Unlock()
	if headDirty {
		return s.writeHead(head)
	}
	return nil
}

// Peek returns up to maxRecords pending records (and at most maxBytes of
// data, but always at least one record), oldest first, without removing
// them.
func (s *Spool) Peek(maxRecords, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.head >= s.next || maxRecords <= 0 {
		return nil, nil
	}
	si := -1
	var cur position
	if s.pos != nil && s.pos.seq == s.head {
		for i, seg := range s.segs {
			if seg.first == s.pos.seg {
				si, cur = i, *s.pos
				break
			}
		}
	}
	if si < 0 {
		for i, seg := range s.segs {
			if seg.first <= s.head && s.head < seg.next {
				si, cur = i, position{seq: seg.first, seg: seg.first}
				break
			}
		}
	}
	if si < 0 {
		return nil, nil
	}
	var out []Record
	total := 0
	for ; si < len(s.segs); si++ {
		seg := s.segs[si]
		if cur.seg != seg.first {
			cur = position{seq: seg.first, seg: seg.first}
		}
		if cur.seq >= seg.next {
			continue
		}
		recs, end, full, err := s.readSegment(seg, cur, maxRecords-len(out), maxBytes-total, len(out) == 0)
		for _, r := range recs {
			total += len(r.Data)
		}
		out = append(out, recs...)
		if err != nil {
			return nil, err
		}
		cur = end
		if full {
			break
		}
	}
	s.peekEnd = &cur
	return out, nil
}

// readSegment reads records of seg from cur until limits are reached and
// returns them, the position after the last one read, and whether a limit
// stopped it. It caches the head's position on the way. mu held.
func (s *Spool) readSegment(seg *segment, cur position, maxRecords, maxBytes int, first bool) ([]Record, position, bool, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, cur, false, fmt.Errorf("spool: open segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, cur.off, seg.size-cur.off), 1<<16)
	var out []Record
	total := 0
	for cur.seq < seg.next {
		var hdr [headerLen]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return out, cur, false, fmt.Errorf("spool: read %s at %d: %w", seg.path, cur.off, err)
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:]))
		if cur.seq >= s.head {
			if len(out) >= maxRecords || ((len(out) > 0 || !first) && total+n > maxBytes) {
				return out, cur, true, nil
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(r, data); err != nil {
				return out, cur, false, fmt.Errorf("spool: read %s at %d: %w", seg.path, cur.off, err)
			}
			if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, data) != binary.LittleEndian.Uint32(hdr[4:]) {
				return out, cur, false, fmt.Errorf("spool: checksum mismatch in %s at %d", seg.path, cur.off)
			}
			out = append(out, Record{Seq: cur.seq, Data: data})
			total += n
		} else if _, err := r.Discard(n); err != nil {
			return out, cur, false, fmt.Errorf("spool: read %s at %d: %w", seg.path, cur.off, err)
		}
		cur.off += headerLen + int64(n)
		cur.seq++
		if cur.seq == s.head {
			p := cur
			s.pos = &p
		}
	}
	return out, cur, false, nil
}

// Ack removes every record up to and including seq.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if seq < s.head || seq >= s.next {
		s.mu.Unlock()
		if seq >= s.next {
			return fmt.Errorf("spool: ack %d beyond last record %d", seq, s.next-1)
		}
		return nil // already acknowledged or dropped
	}
	s.stats.Acked += seq + 1 - s.head
	s.head = seq + 1
	if s.peekEnd != nil && s.peekEnd.seq == s.head {
		s.pos = s.peekEnd
	} else {
		s.pos = nil
	}
	s.peekEnd = nil
	s.stats.Pending = s.next - s.head
	s.removeAcked()
	head := s.head
	s.headDirty = false
	s.mu.Unlock()
	return s.writeHead(head)
}

// removeAcked deletes segments whose records are all below head (never
// the active one). mu held.
func (s *Spool) removeAcked() {
	keep := s.segs[:0]
	for i, seg := range s.segs {
		if seg.next <= s.head && i < len(s.segs)-1 {
			if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("spool: remove acknowledged segment", "path", seg.path, "err", err)
			}
			continue
		}
		keep = append(keep, seg)
	}
	s.segs = keep
}

func (s *Spool) writeHead(head uint64) error {
	p := filepath.Join(s.opts.Dir, headFile)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: write head: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(head, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return fmt.Errorf("spool: write head: %w", err)
	}
	return nil
}

// Len returns the number of pending records.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.next - s.head)
}

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Pending = s.next - s.head
	return st
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	err := s.Sync()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.headDirty {
		err = errors.Join(err, s.writeHead(s.head))
	}
	if s.active != nil {
		err = errors.Join(err, s.active.Close())
	}
	return err
}
