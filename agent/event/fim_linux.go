package event

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileSource feeds file_events from fanotify (with the acting pid) or, when
// fanotify is not available, inotify (no pid).
type fileSource struct {
	log     *slog.Logger
	sink    Sink
	spec    fimSpec
	be      fsBackend
	pending *pendingUpdates
	self    int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	c       counters
	watched int
}

// startFiles opens fanotify (it knows the acting pid) and falls back to
// inotify with a warning saying why.
func startFiles(ctx context.Context, log *slog.Logger, sink Sink, spec fimSpec, st starters) (*fileSource, error) {
	be, ferr := st.fanotify()
	if ferr != nil {
		var err error
		be, err = st.inotify()
		if err != nil {
			return nil, fmt.Errorf("fanotify: %v; inotify: %w", ferr, err)
		}
		log.Warn("file events: fanotify unavailable, using inotify (no pid, not recursive by itself)", "fanotify_err", ferr)
	}
	return startFilesOn(ctx, log, sink, spec, be), nil
}

func startFilesOn(ctx context.Context, log *slog.Logger, sink Sink, spec fimSpec, be fsBackend) *fileSource {
	s := &fileSource{log: log, sink: sink, spec: spec, be: be, pending: newPendingUpdates(time.Second), self: os.Getpid()}
	for _, d := range spec.dirs() {
		if err := be.add(d); err != nil {
			log.Warn("file events: cannot watch directory", "dir", d, "err", err)
			continue
		}
		s.watched++
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.run(ctx)
	return s
}

func (s *fileSource) run(ctx context.Context) {
	defer s.wg.Done()
	var lastErr time.Time
	for ctx.Err() == nil {
		evs, lost, err := s.be.read()
		if lost > 0 {
			s.c.overflows.Add(uint64(lost))
		}
		if err != nil {
			if time.Since(lastErr) > time.Minute {
				s.log.Warn("file events: read failed", "source", s.be.name(), "err", err)
				lastErr = time.Now()
			}
			time.Sleep(100 * time.Millisecond)
		}
		now := time.Now()
		for _, e := range evs {
			s.handle(e, now)
		}
		for path, u := range s.pending.due(now) {
			s.emit(path, u.category, ActionUpdated, u.pid, now)
		}
	}
}

func (s *fileSource) handle(e fsEvent, now time.Time) {
	path := e.dir
	if e.name != "" && e.name != "." {
		path = filepath.Join(e.dir, e.name)
	}
	if e.isDir && (e.created || e.movedTo) && s.spec.recursiveUnder(path) {
		_ = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && s.be.add(p) == nil {
				s.watched++
			}
			return nil
		})
	}
	if e.pid == s.self {
		return // our own writes (spool, state) never feed back
	}
	cat := s.spec.match(path)
	if cat == "" {
		return
	}
	if e.created {
		s.emit(path, cat, ActionCreated, e.pid, now)
	}
	if e.movedFrom {
		s.emit(path, cat, ActionMovedFrom, e.pid, now)
	}
	if e.movedTo {
		s.emit(path, cat, ActionMovedTo, e.pid, now)
	}
	if e.attrib {
		s.emit(path, cat, ActionAttributes, e.pid, now)
	}
	if e.closeWrite {
		s.pending.closed(path)
		s.emit(path, cat, ActionUpdated, e.pid, now)
	} else if e.modified {
		s.pending.modified(path, cat, e.pid, now)
	}
	if e.deleted {
		s.pending.closed(path)
		s.emit(path, cat, ActionDeleted, e.pid, now)
	}
}

func (s *fileSource) emit(path, cat, action string, pid int, now time.Time) {
	s.sink.Add("file_events", fimRow(path, cat, action, pid, now))
	s.c.events.Add(1)
}

func (s *fileSource) Stats() Stats {
	return s.c.snapshot(Stats{Source: s.be.name(), Active: true})
}

func (s *fileSource) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		err = s.be.close()
	})
	return err
}

// --- fanotify ---

const fanMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO |
	unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_ATTRIB | unix.FAN_EVENT_ON_CHILD | unix.FAN_ONDIR

type fanBackend struct {
	fd      int
	mu      sync.Mutex
	handles map[string]string // file handle -> directory
	buf     []byte
}

func newFanotify() (*fanBackend, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	return &fanBackend{fd: fd, handles: map[string]string{}, buf: make([]byte, 64<<10)}, nil
}

func (f *fanBackend) name() string { return "fanotify" }

func handleKey(typ int32, b []byte) string { return fmt.Sprintf("%d:%x", typ, b) }

func (f *fanBackend) add(dir string) error {
	if err := unix.FanotifyMark(f.fd, unix.FAN_MARK_ADD, fanMask, unix.AT_FDCWD, dir); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", dir, err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		return fmt.Errorf("name_to_handle_at %s: %w", dir, err)
	}
	f.mu.Lock()
	f.handles[handleKey(h.Type(), h.Bytes())] = dir
	f.mu.Unlock()
	return nil
}

func (f *fanBackend) read() ([]fsEvent, int, error) {
	pfd := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 300); err != nil || n == 0 {
		if errors.Is(err, unix.EINTR) {
			err = nil
		}
		return nil, 0, err
	}
	n, err := unix.Read(f.fd, f.buf)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	evs, lost := f.parse(f.buf[:n])
	return evs, lost, nil
}

// parse decodes fanotify_event_metadata records with their DFID_NAME info.
func (f *fanBackend) parse(b []byte) ([]fsEvent, int) {
	var evs []fsEvent
	lost := 0
	for len(b) >= unix.FAN_EVENT_METADATA_LEN {
		evLen := int(binary.NativeEndian.Uint32(b[0:]))
		metaLen := int(binary.NativeEndian.Uint16(b[6:]))
		if evLen < metaLen || evLen > len(b) || metaLen < unix.FAN_EVENT_METADATA_LEN {
			break
		}
		mask := binary.NativeEndian.Uint64(b[8:])
		fd := int32(binary.NativeEndian.Uint32(b[16:]))
		pid := int(int32(binary.NativeEndian.Uint32(b[20:])))
		if fd >= 0 {
			unix.Close(int(fd))
		}
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			lost++
		}
		info := b[metaLen:evLen]
		for len(info) >= 4 {
			typ := info[0]
			l := int(binary.NativeEndian.Uint16(info[2:]))
			if l < 4 || l > len(info) {
				break
			}
			rec := info[:l]
			info = info[l:]
			if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME || len(rec) < 20 {
				continue
			}
			hb := int(binary.NativeEndian.Uint32(rec[12:]))
			ht := int32(binary.NativeEndian.Uint32(rec[16:]))
			if 20+hb > len(rec) {
				continue
			}
			name := rec[20+hb:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			f.mu.Lock()
			dir, ok := f.handles[handleKey(ht, rec[20:20+hb])]
			f.mu.Unlock()
			if !ok {
				continue
			}
			evs = append(evs, fsEvent{
				dir: dir, name: string(name), pid: pid, isDir: mask&unix.FAN_ONDIR != 0,
				created: mask&unix.FAN_CREATE != 0, deleted: mask&unix.FAN_DELETE != 0,
				movedFrom: mask&unix.FAN_MOVED_FROM != 0, movedTo: mask&unix.FAN_MOVED_TO != 0,
				modified: mask&unix.FAN_MODIFY != 0, closeWrite: mask&unix.FAN_CLOSE_WRITE != 0,
				attrib: mask&unix.FAN_ATTRIB != 0,
			})
		}
		b = b[evLen:]
	}
	return evs, lost
}

func (f *fanBackend) close() error { return unix.Close(f.fd) }

// --- inotify ---

const inMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB

type inBackend struct {
	fd  int
	mu  sync.Mutex
	wds map[int32]string
	buf []byte
}

func newInotify() (*inBackend, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	return &inBackend{fd: fd, wds: map[int32]string{}, buf: make([]byte, 64<<10)}, nil
}

func (in *inBackend) name() string { return "inotify" }

func (in *inBackend) add(dir string) error {
	wd, err := unix.InotifyAddWatch(in.fd, dir, inMask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	in.mu.Lock()
	in.wds[int32(wd)] = dir
	in.mu.Unlock()
	return nil
}

func (in *inBackend) read() ([]fsEvent, int, error) {
	pfd := []unix.PollFd{{Fd: int32(in.fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 300); err != nil || n == 0 {
		if errors.Is(err, unix.EINTR) {
			err = nil
		}
		return nil, 0, err
	}
	n, err := unix.Read(in.fd, in.buf)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	var evs []fsEvent
	lost := 0
	b := in.buf[:n]
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		l := int(binary.NativeEndian.Uint32(b[12:]))
		if unix.SizeofInotifyEvent+l > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+l]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		b = b[unix.SizeofInotifyEvent+l:]
		if mask&unix.IN_Q_OVERFLOW != 0 {
			lost++
			continue
		}
		in.mu.Lock()
		dir, ok := in.wds[wd]
		if mask&unix.IN_IGNORED != 0 {
			delete(in.wds, wd)
		}
		in.mu.Unlock()
		if !ok {
			continue
		}
		evs = append(evs, fsEvent{
			dir: dir, name: string(name), isDir: mask&unix.IN_ISDIR != 0,
			created: mask&unix.IN_CREATE != 0, deleted: mask&unix.IN_DELETE != 0,
			movedFrom: mask&unix.IN_MOVED_FROM != 0, movedTo: mask&unix.IN_MOVED_TO != 0,
			modified: mask&unix.IN_MODIFY != 0, closeWrite: mask&unix.IN_CLOSE_WRITE != 0,
			attrib: mask&unix.IN_ATTRIB != 0,
		})
	}
	return evs, lost, nil
}

func (in *inBackend) close() error { return unix.Close(in.fd) }

// statInto sets the file metadata columns of a file_events row.
func statInto(row map[string]string, fi os.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	row["inode"] = strconv.FormatUint(st.Ino, 10)
	row["uid"] = strconv.FormatUint(uint64(st.Uid), 10)
	row["gid"] = strconv.FormatUint(uint64(st.Gid), 10)
	row["mode"] = fmt.Sprintf("%04o", st.Mode&0o7777)
	row["size"] = strconv.FormatInt(st.Size, 10)
	row["atime"] = strconv.FormatInt(st.Atim.Sec, 10)
	row["mtime"] = strconv.FormatInt(st.Mtim.Sec, 10)
	row["ctime"] = strconv.FormatInt(st.Ctim.Sec, 10)
}
