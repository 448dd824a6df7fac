package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
)

// The loss tests force real loss (the kernel or our queue really drops
// messages) and check that the counters the agent reports
// (Manager.Stats, read by osquery_events, vigil_event_drops and the status
// log) say so. The reader is stalled with gateSink: its first Add blocks
// until the test opens the gate, as a slow consumer would.

type gateSink struct {
	buf     *Buffer
	gate    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func newGateSink() *gateSink {
	return &gateSink{buf: NewBuffer(BufferOptions{Max: 1 << 20}), gate: make(chan struct{}), blocked: make(chan struct{})}
}

func (g *gateSink) Add(table string, row map[string]string) {
	g.once.Do(func() { close(g.blocked) })
	<-g.gate
	g.buf.Add(table, row)
}

// stall waits until the reader is blocked in Add; trigger makes the first
// event.
func (g *gateSink) stall(t *testing.T, trigger func()) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		trigger()
		select {
		case <-g.blocked:
			return
		case <-deadline:
			t.Fatal("the source never delivered a first event")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitStats polls m.Stats until ok(source's stats) or a deadline, calling
// poke (if not nil) between polls.
func waitStats(m *Manager, name string, ok func(Stats) bool, poke func()) Stats {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := findStats(m.Stats(), name)
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		if poke != nil {
			poke()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func noAudit(context.Context, *slog.Logger, Sink, map[string]bool, string) (source, error) {
	return nil, errors.New("audit disabled by the test")
}

func missingPids(buf *Buffer, pids map[string]bool) int {
	rows, _ := buf.Rows("process_events", 0)
	seen := map[string]bool{}
	for _, r := range rows {
		if pids[r["pid"]] {
			seen[r["pid"]] = true
		}
	}
	return len(pids) - len(seen)
}

// TestLossCnProcSocketOverflow: a process connector socket with a tiny
// receive buffer and a stalled reader; a burst of execs overflows it and
// the kernel drops messages (ENOBUFS), counted as SocketOverflows.
func TestLossCnProcSocketOverflow(t *testing.T) {
	requireRoot(t)
	g := newGateSink()
	m := start(context.Background(), Options{Sink: g, Logger: testLogger(t), Tables: []string{"process_events"}}, starters{
		audit: noAudit,
		cnproc: func(ctx context.Context, log *slog.Logger, sink Sink) (source, error) {
			return startCnProc(ctx, log, sink, 4096)
		},
	})
	defer m.Close()
	if s, ok := findStats(m.Stats(), "cn_proc"); !ok || !s.Active {
		t.Fatalf("cn_proc did not start: %+v", m.Stats())
	}
	g.stall(t, func() { exec.Command("/bin/true").Run() })
	pids, _, err := runBurst(300, 4)
	if err != nil {
		t.Fatal(err)
	}
	close(g.gate)
	st := waitStats(m, "cn_proc", func(s Stats) bool { return s.SocketOverflows > 0 }, nil)
	// Everything the socket still held is read before the sentinel, so
	// "missing" counts only what the kernel dropped.
	execSentinel(t, g.buf)
	st, _ = findStats(m.Stats(), "cn_proc")
	missing := missingPids(g.buf, pids)
	t.Logf("cn_proc: %d of %d burst execs missing; stats %+v", missing, len(pids), st)
	if st.SocketOverflows == 0 {
		t.Fatalf("no socket overflow counted although %d of %d execs were lost", missing, len(pids))
	}
	if missing == 0 {
		t.Fatalf("socket overflows counted (%d) but nothing was lost", st.SocketOverflows)
	}
}

// TestLossAuditQueueDropped: the audit source with a queue of 8 messages
// between the socket reader and a stalled parser; a burst of execs fills
// it and the rest is dropped (QueueDropped), and the reassembler sees the
// missing sequence numbers (SequenceGaps).
func TestLossAuditQueueDropped(t *testing.T) {
	requireRoot(t)
	g := newGateSink()
	m := start(context.Background(), Options{Sink: g, Logger: testLogger(t), Tables: []string{"process_events"}}, starters{
		audit: func(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string) (source, error) {
			return startAudit(ctx, log, sink, tables, stateDir, 8)
		},
	})
	defer m.Close()
	if s, ok := findStats(m.Stats(), "audit"); !ok || !s.Active {
		skipIfAuditBusy(t, m.Stats())
		t.Fatalf("audit did not start: %+v", m.Stats())
	}
	g.stall(t, func() { exec.Command("/bin/true").Run() })
	pids, _, err := runBurst(200, 4)
	if err != nil {
		t.Fatal(err)
	}
	close(g.gate)
	// A gap shows when a later event arrives: exec until one does.
	st := waitStats(m, "audit", func(s Stats) bool { return s.QueueDropped > 0 && s.SequenceGaps > 0 },
		func() { exec.Command("/bin/true").Run() })
	// The reassembler hands on the sentinel only after every earlier
	// event, complete or expired: then "missing" counts only real loss.
	execSentinel(t, g.buf)
	st, _ = findStats(m.Stats(), "audit")
	missing := missingPids(g.buf, pids)
	t.Logf("audit: %d of %d burst execs missing; stats %+v", missing, len(pids), st)
	if st.QueueDropped == 0 || st.SequenceGaps == 0 {
		t.Fatalf("loss not counted: queue_dropped %d, sequence_gaps %d, %d of %d execs missing", st.QueueDropped, st.SequenceGaps, missing, len(pids))
	}
	if missing == 0 {
		t.Fatalf("drops counted but no exec missing: %+v", st)
	}
}

// TestLossAuditKernelLost: the kernel's own backlog made tiny (limit 1, no
// wait) during a burst, so the kernel drops records; the source reports the
// growth of the kernel's lost counter as KernelLost. The audit settings are
// put back at the end.
func TestLossAuditKernelLost(t *testing.T) {
	requireRoot(t)
	buf := NewBuffer(BufferOptions{})
	m := start(context.Background(), Options{Sink: buf, Logger: testLogger(t), Tables: []string{"process_events"}}, platformStarters())
	defer m.Close()
	if s, ok := findStats(m.Stats(), "audit"); !ok || !s.Active {
		skipIfAuditBusy(t, m.Stats())
		t.Fatalf("audit did not start: %+v", m.Stats())
	}
	c, err := libaudit.NewAuditClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st0, err := c.GetStatus()
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		c.SetBacklogLimit(st0.BacklogLimit, libaudit.WaitForReply)
		c.SetBacklogWaitTime(int32(st0.BacklogWaitTime), libaudit.WaitForReply)
	}
	defer restore()
	if err := c.SetBacklogWaitTime(0, libaudit.WaitForReply); err != nil {
		t.Fatalf("set backlog wait time: %v", err)
	}
	if err := c.SetBacklogLimit(1, libaudit.WaitForReply); err != nil {
		t.Fatalf("set backlog limit: %v", err)
	}
	pids, _, err := runBurst(300, 8)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	st := waitStats(m, "audit", func(s Stats) bool { return s.KernelLost > 0 }, nil)
	// As in TestLossAuditQueueDropped: after the sentinel, "missing"
	// counts only what the kernel dropped.
	execSentinel(t, buf)
	st, _ = findStats(m.Stats(), "audit")
	missing := missingPids(buf, pids)
	t.Logf("audit: %d of %d burst execs missing; stats %+v", missing, len(pids), st)
	if st.KernelLost == 0 {
		t.Fatalf("kernel lost not counted; %d of %d execs missing", missing, len(pids))
	}
}

// TestLossFileQueueOverflow: fanotify and inotify queues (16384 events by
// default) overflow while the reader is stalled; the overflow notice is
// counted as SocketOverflows of the file source.
func TestLossFileQueueOverflow(t *testing.T) {
	real := platformStarters()
	for _, name := range []string{"inotify", "fanotify"} {
		t.Run(name, func(t *testing.T) {
			st := starters{inotify: real.inotify, fanotify: real.fanotify}
			if name == "inotify" {
				st.fanotify = func() (fsBackend, error) { return nil, errors.New("fanotify disabled by the test") }
			} else {
				requireRoot(t)
			}
			g := newGateSink()
			m := start(context.Background(), Options{Sink: g, Logger: testLogger(t), Tables: []string{"file_events"}}, st)
			defer m.Close()
			dir := t.TempDir()
			m.SetFilePaths(map[string][]string{"flood": {dir + "/%"}}, nil)
			if s, ok := findStats(m.Stats(), name); !ok || !s.Active {
				t.Skipf("skipping: %s unavailable: %+v", name, m.Stats())
			}
			// The first event comes from a shell: fanotify ignores our own pid.
			g.stall(t, func() {
				exec.Command("/bin/sh", "-c", "printf x > "+filepath.Join(dir, "first")).Run()
			})
			max := 16384
			if b, err := os.ReadFile("/proc/sys/fs/" + name + "/max_queued_events"); err == nil {
				if n, err := strconv.Atoi(string(b[:len(b)-1])); err == nil {
					max = n
				}
			}
			n := max + 1000 // distinct names: fanotify merges events of one name
			for i := range n {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			close(g.gate)
			s := waitStats(m, name, func(s Stats) bool { return s.SocketOverflows > 0 }, nil)
			t.Logf("%s: %d files created with a stalled reader (queue max %d); stats %+v", name, n, max, s)
			if s.SocketOverflows == 0 {
				t.Fatalf("%s queue overflow not counted", name)
			}
		})
	}
}

func skipIfAuditBusy(t *testing.T, st []Stats) {
	t.Helper()
	for _, s := range st {
		if s.Source == "audit" && !s.Active && strings.Contains(s.Error, "already delivered") {
			t.Skipf("skipping: another process holds the audit socket: %s", s.Error)
		}
	}
}
