package event

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
)

// Sink receives event rows. *Buffer implements it.
type Sink interface {
	Add(table string, row map[string]string)
}

var _ Sink = (*Buffer)(nil)

// Stats are the counters of one event source. Every way a source can lose
// an event has its own counter so that a gap is explained, not guessed.
type Stats struct {
	Source string `json:"source"` // "audit", "cn_proc", ...
	Active bool   `json:"active"`
	Error  string `json:"error,omitempty"` // why it is not active
	Events uint64 `json:"events"`          // rows delivered to the sink
	// KernelLost is the kernel's audit "lost" counter growth since start.
	KernelLost uint64 `json:"kernel_lost"`
	// SocketOverflows counts ENOBUFS on the receive socket (kernel dropped
	// messages because we read too slowly) and, for file_events, the
	// fanotify/inotify queue-overflow notices. It counts occurrences: the
	// kernel does not say how many messages each one lost.
	SocketOverflows uint64 `json:"socket_overflows"`
	// QueueDropped counts messages dropped because our own queue between
	// the socket reader and the parser was full.
	QueueDropped uint64 `json:"queue_dropped"`
	// SequenceGaps counts audit events never received, from gaps in the
	// audit sequence numbers (reassembler).
	SequenceGaps uint64 `json:"sequence_gaps"`
	// Incomplete counts events whose records were partly missing (argv cut).
	Incomplete uint64 `json:"incomplete"`
	// ParseErrors counts records that could not be parsed.
	ParseErrors uint64 `json:"parse_errors"`
	// ProcGone counts cn_proc exec events whose /proc entry was gone before
	// it could be read (the row is kept, with less detail).
	ProcGone uint64 `json:"proc_gone"`
	// Tables are the event tables the source feeds (osquery's
	// subscriptions), set by the Manager.
	Tables []string `json:"tables,omitempty"`
	// Refreshes counts restarts of the source (file_events: one per new
	// file_paths), as osquery's publisher refreshes.
	Refreshes uint64 `json:"refreshes"`
}

// counters is the atomic form of Stats kept by running sources.
type counters struct {
	events, kernelLost, overflows, queueDropped, gaps, incomplete, parseErrors, procGone atomic.Uint64
}

func (c *counters) snapshot(s Stats) Stats {
	s.Events = c.events.Load()
	s.KernelLost = c.kernelLost.Load()
	s.SocketOverflows = c.overflows.Load()
	s.QueueDropped = c.queueDropped.Load()
	s.SequenceGaps = c.gaps.Load()
	s.Incomplete = c.incomplete.Load()
	s.ParseErrors = c.parseErrors.Load()
	s.ProcGone = c.procGone.Load()
	return s
}

// Options selects the sources Start runs.
type Options struct {
	Sink   Sink
	Logger *slog.Logger
	// Tables to feed; nil means every table this platform supports.
	// Known: "process_events", "socket_events", "user_events",
	// "file_events" (started by SetFilePaths).
	Tables []string
	// StateDir keeps what must survive a crash (the audit status found at
	// start, to restore it on the next clean stop); "" keeps nothing.
	StateDir string
}

// source is one running event source.
type source interface {
	Stats() Stats
	io.Closer
}

// Manager runs the event sources and restores the system state they
// changed when closed.
type Manager struct {
	log           *slog.Logger
	ctx           context.Context
	sink          Sink
	mu            sync.Mutex
	sources       []source
	tables        map[source][]string // tables each source feeds
	failed        []Stats
	fileRefreshes uint64
	files         source // file_events source, replaced by SetFilePaths
	filesOK       bool   // file_events wanted (Options.Tables)
	start         starters
}

// starters are the constructors Start and SetFilePaths try, in order of
// preference. They are fields, not direct calls, so that tests can make one
// fail and check the fallback that follows.
type starters struct {
	audit  func(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string) (source, error)
	cnproc func(ctx context.Context, log *slog.Logger, sink Sink) (source, error)
	// fanotify and inotify open the file notification backends.
	fanotify, inotify func() (fsBackend, error)
}

// ErrUnsupported means no source for a table works on this platform.
var ErrUnsupported = errors.New("event source not supported on this platform")

// Start starts the sources for opts.Tables. It never fails: a source that
// cannot start (no root, auditd holding the audit socket, an old kernel) is
// logged as a warning saying what was tried and why it failed, and its
// tables stay empty. Close stops everything.
func Start(ctx context.Context, opts Options) *Manager {
	return start(ctx, opts, platformStarters())
}

func start(ctx context.Context, opts Options, st starters) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: opts.Logger.With("component", "events"), ctx: ctx, sink: opts.Sink, start: st}
	want := map[string]bool{}
	if opts.Tables == nil {
		for _, t := range []string{"process_events", "socket_events", "user_events", "file_events"} {
			want[t] = true
		}
	}
	for _, t := range opts.Tables {
		want[t] = true
	}
	m.filesOK = want["file_events"]
	startPlatform(ctx, m, opts.Sink, want, opts.StateDir)
	return m
}

func (m *Manager) add(s source, tables []string) {
	m.mu.Lock()
	m.sources = append(m.sources, s)
	if m.tables == nil {
		m.tables = map[source][]string{}
	}
	m.tables[s] = tables
	m.mu.Unlock()
}

func (m *Manager) fail(s Stats) {
	m.mu.Lock()
	m.failed = append(m.failed, s)
	m.mu.Unlock()
}

// Stats returns the counters of every source, including the ones that
// failed to start (Active false, Error set).
func (m *Manager) Stats() []Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Stats, 0, len(m.sources)+len(m.failed))
	for _, s := range m.sources {
		st := s.Stats()
		st.Tables = m.tables[s]
		out = append(out, st)
	}
	if m.files != nil {
		st := m.files.Stats()
		st.Tables = []string{"file_events"}
		st.Refreshes = m.fileRefreshes
		out = append(out, st)
	}
	out = append(out, m.failed...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// Close stops the sources and restores what they changed (audit rules,
// audit enabled flag, backlog limit).
func (m *Manager) Close() error {
	m.mu.Lock()
	srcs := append([]source(nil), m.sources...)
	if m.files != nil {
		srcs = append(srcs, m.files)
	}
	m.mu.Unlock()
	// Sources' Close is idempotent; their counters stay readable.
	var errs []error
	for i := len(srcs) - 1; i >= 0; i-- {
		errs = append(errs, srcs[i].Close())
	}
	return errors.Join(errs...)
}

// SetFilePaths (re)configures file_events from a config's file_paths and
// exclude_paths (osquery FIM: "%%" recursive, "%" one level, globs). An
// empty paths stops file events. Failures are logged, never fatal.
func (m *Manager) SetFilePaths(paths, exclude map[string][]string) {
	if !m.filesOK {
		return
	}
	m.mu.Lock()
	old := m.files
	m.files = nil
	kept := m.failed[:0]
	for _, f := range m.failed {
		if f.Source != "file_events" {
			kept = append(kept, f)
		}
	}
	m.failed = kept
	m.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			m.log.Warn("file events: stopping previous watcher", "err", err)
		}
	}
	if len(paths) == 0 {
		return
	}
	spec := parseFilePaths(paths, exclude)
	fs, err := startFiles(m.ctx, m.log, m.sink, spec, m.start)
	if err != nil {
		m.fail(Stats{Source: "file_events", Error: err.Error()})
		m.log.Warn("file events: no watcher works; file_events stays empty", "err", err)
		return
	}
	m.mu.Lock()
	if old != nil {
		m.fileRefreshes++
	}
	m.files = fs
	m.mu.Unlock()
	m.log.Info("file events: watching", "source", fs.Stats().Source, "watches", len(spec.watches))
}
