package event

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// logRecords captures slog output as parsed JSON records.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logRecords) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logRecords) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// warnings returns the WARN records whose message contains substr.
func (l *logRecords) warnings(t *testing.T, substr string) []map[string]any {
	var out []map[string]any
	for _, r := range l.records(t) {
		if r["level"] == "WARN" && strings.Contains(r["msg"].(string), substr) {
			out = append(out, r)
		}
	}
	return out
}

type fakeSource struct {
	name   string
	closed bool
}

func (f *fakeSource) Stats() Stats { return Stats{Source: f.name, Active: true} }
func (f *fakeSource) Close() error { f.closed = true; return nil }

func findStats(st []Stats, source string) (Stats, bool) {
	for _, s := range st {
		if s.Source == source {
			return s, true
		}
	}
	return Stats{}, false
}

// TestFallbackAuditToCnProc checks startPlatform's order: audit first; when
// audit fails, the process connector feeds process_events only, with a
// warning that names the audit error; socket and user events are not
// pretended.
func TestFallbackAuditToCnProc(t *testing.T) {
	auditErr := errors.New("audit events are already delivered to pid 4242 (auditd); only one process can receive them")
	cnErr := errors.New("open process connector socket: netlink socket: operation not permitted")
	type calls struct{ audit, cnproc int }
	mk := func(c *calls, auditFails, cnFails bool, cn *fakeSource) starters {
		return starters{
			audit: func(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string) (source, error) {
				c.audit++
				if auditFails {
					return nil, auditErr
				}
				return &fakeSource{name: "audit"}, nil
			},
			cnproc: func(ctx context.Context, log *slog.Logger, sink Sink) (source, error) {
				c.cnproc++
				if cnFails {
					return nil, cnErr
				}
				return cn, nil
			},
		}
	}

	t.Run("audit fails, cn_proc chosen", func(t *testing.T) {
		var c calls
		var logs logRecords
		cn := &fakeSource{name: "cn_proc"}
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(),
			Tables: []string{"process_events", "socket_events"}}, mk(&c, true, false, cn))
		st := m.Stats()
		if c.audit != 1 || c.cnproc != 1 {
			t.Fatalf("constructors called audit=%d cn_proc=%d, want 1 and 1", c.audit, c.cnproc)
		}
		a, ok := findStats(st, "audit")
		if !ok || a.Active || a.Error != auditErr.Error() {
			t.Errorf("audit stats %+v, want inactive with the audit error", a)
		}
		p, ok := findStats(st, "cn_proc")
		if !ok || !p.Active || !slices.Equal(p.Tables, []string{"process_events"}) {
			t.Errorf("cn_proc stats %+v, want active feeding process_events only", p)
		}
		w := logs.warnings(t, "using the process connector")
		if len(w) != 1 {
			t.Fatalf("want one warning about the process connector, logs: %v", logs.records(t))
		}
		if w[0]["audit_err"] != auditErr.Error() {
			t.Errorf("warning does not name why audit failed: %v", w[0])
		}
		if !strings.Contains(w[0]["msg"].(string), "socket_events and user_events stay empty") {
			t.Errorf("warning does not say what is lost: %v", w[0])
		}
		m.Close()
		if !cn.closed {
			t.Error("Close did not stop the cn_proc source")
		}
	})

	t.Run("audit fails, no process_events wanted", func(t *testing.T) {
		var c calls
		var logs logRecords
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(),
			Tables: []string{"socket_events"}}, mk(&c, true, false, &fakeSource{name: "cn_proc"}))
		defer m.Close()
		if c.cnproc != 0 {
			t.Errorf("cn_proc started for socket_events, which it cannot feed")
		}
		w := logs.warnings(t, "audit netlink unavailable")
		if len(w) != 1 || w[0]["err"] != auditErr.Error() {
			t.Errorf("want one warning naming the audit error, logs: %v", logs.records(t))
		}
	})

	t.Run("both fail", func(t *testing.T) {
		var c calls
		var logs logRecords
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(),
			Tables: []string{"process_events"}}, mk(&c, true, true, nil))
		defer m.Close()
		st := m.Stats()
		if a, _ := findStats(st, "audit"); a.Active || a.Error != auditErr.Error() {
			t.Errorf("audit stats %+v", a)
		}
		if p, _ := findStats(st, "cn_proc"); p.Active || p.Error != cnErr.Error() {
			t.Errorf("cn_proc stats %+v", p)
		}
		w := logs.warnings(t, "no event source works")
		if len(w) != 1 || w[0]["audit_err"] != auditErr.Error() || w[0]["cn_proc_err"] != cnErr.Error() {
			t.Errorf("want one warning naming both errors, logs: %v", logs.records(t))
		}
	})

	t.Run("audit works, no fallback", func(t *testing.T) {
		var c calls
		var logs logRecords
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(),
			Tables: []string{"process_events"}}, mk(&c, false, false, &fakeSource{name: "cn_proc"}))
		defer m.Close()
		if c.cnproc != 0 {
			t.Error("cn_proc started although audit works")
		}
		if a, _ := findStats(m.Stats(), "audit"); !a.Active {
			t.Errorf("audit not active: %+v", m.Stats())
		}
		if w := logs.warnings(t, ""); len(w) != 0 {
			t.Errorf("warnings although audit works: %v", w)
		}
	})
}

// TestFallbackRealAuditBusy makes audit fail for real: a first Manager holds
// the audit socket, so a second one must fall back to the real process
// connector, say why, and still see execs. It also checks that the failed
// audit start left the holder's audit state alone.
func TestFallbackRealAuditBusy(t *testing.T) {
	requireRoot(t)
	holderBuf, holder := startAuditOnly(t, "process_events")
	defer holder.Close()
	enabled0, _ := auditState(t)

	var logs logRecords
	buf := NewBuffer(BufferOptions{})
	m := Start(context.Background(), Options{Sink: buf, Logger: logs.logger(), Tables: []string{"process_events"}})
	defer m.Close()
	st := m.Stats()
	a, _ := findStats(st, "audit")
	p, _ := findStats(st, "cn_proc")
	self := "pid " + strconv.Itoa(os.Getpid())
	if a.Active || !strings.Contains(a.Error, "already delivered to "+self) {
		t.Fatalf("second audit start: %+v, want an error naming the holder %s", a, self)
	}
	if !p.Active {
		t.Fatalf("cn_proc not chosen: %+v", st)
	}
	w := logs.warnings(t, "using the process connector")
	if len(w) != 1 || !strings.Contains(w[0]["audit_err"].(string), "already delivered to "+self) {
		t.Fatalf("no warning naming why audit failed: %v", logs.records(t))
	}
	if enabled1, _ := auditState(t); enabled1 != enabled0 {
		t.Fatalf("failed audit start changed audit enabled %d -> %d under its holder", enabled0, enabled1)
	}

	tag := "vigil-fallback-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// The shell lives long enough for /proc to be read; tag is its $0.
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.3; true", tag)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if waitTable(buf, "process_events", func(r map[string]string) bool { return r["pid"] == pid }) == nil {
		t.Errorf("cn_proc fallback saw no exec of pid %s", pid)
	}
	if waitTable(holderBuf, "process_events", func(r map[string]string) bool { return strings.Contains(r["cmdline"], tag) }) == nil {
		t.Errorf("the audit holder stopped receiving execs after the second start failed")
	}
}

// TestFallbackFanotifyToInotify checks SetFilePaths' order: fanotify first,
// inotify with a warning naming the fanotify error, and a clear inactive
// entry when neither works.
func TestFallbackFanotifyToInotify(t *testing.T) {
	fanErr := errors.New("fanotify_init: operation not permitted")
	inErr := errors.New("inotify_init1: too many open files")
	real := platformStarters()

	t.Run("fanotify fails, inotify chosen", func(t *testing.T) {
		var logs logRecords
		fanCalls := 0
		st := starters{
			fanotify: func() (fsBackend, error) { fanCalls++; return nil, fanErr },
			inotify:  real.inotify,
		}
		buf := NewBuffer(BufferOptions{})
		m := start(context.Background(), Options{Sink: buf, Logger: logs.logger(), Tables: []string{"file_events"}}, st)
		defer m.Close()
		dir := t.TempDir()
		m.SetFilePaths(map[string][]string{"tmp": {dir + "/%"}}, nil)
		if fanCalls != 1 {
			t.Fatalf("fanotify tried %d times, want 1", fanCalls)
		}
		s, ok := findStats(m.Stats(), "inotify")
		if !ok || !s.Active || !slices.Equal(s.Tables, []string{"file_events"}) {
			t.Fatalf("inotify not chosen: %+v", m.Stats())
		}
		w := logs.warnings(t, "fanotify unavailable, using inotify")
		if len(w) != 1 || w[0]["fanotify_err"] != fanErr.Error() {
			t.Fatalf("want one warning naming the fanotify error, logs: %v", logs.records(t))
		}
		// The chosen backend really works.
		f := filepath.Join(dir, "probe")
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if waitTable(buf, "file_events", func(r map[string]string) bool { return r["target_path"] == f }) == nil {
			t.Error("inotify fallback reported nothing for a new file")
		}
	})

	t.Run("both fail", func(t *testing.T) {
		var logs logRecords
		st := starters{
			fanotify: func() (fsBackend, error) { return nil, fanErr },
			inotify:  func() (fsBackend, error) { return nil, inErr },
		}
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(), Tables: []string{"file_events"}}, st)
		defer m.Close()
		m.SetFilePaths(map[string][]string{"tmp": {t.TempDir() + "/%"}}, nil)
		s, ok := findStats(m.Stats(), "file_events")
		if !ok || s.Active || !strings.Contains(s.Error, fanErr.Error()) || !strings.Contains(s.Error, inErr.Error()) {
			t.Fatalf("stats %+v, want file_events inactive naming both errors", m.Stats())
		}
		if len(logs.warnings(t, "no watcher works")) != 1 {
			t.Fatalf("no warning, logs: %v", logs.records(t))
		}
	})

	t.Run("fanotify works, no fallback", func(t *testing.T) {
		requireRoot(t)
		var logs logRecords
		be, err := real.fanotify()
		if err != nil {
			t.Skipf("skipping: fanotify unavailable on this kernel: %v", err)
		}
		be.close()
		inCalls := 0
		st := starters{
			fanotify: real.fanotify,
			inotify:  func() (fsBackend, error) { inCalls++; return real.inotify() },
		}
		m := start(context.Background(), Options{Sink: NewBuffer(BufferOptions{}), Logger: logs.logger(), Tables: []string{"file_events"}}, st)
		defer m.Close()
		m.SetFilePaths(map[string][]string{"tmp": {t.TempDir() + "/%"}}, nil)
		if s, ok := findStats(m.Stats(), "fanotify"); !ok || !s.Active {
			t.Fatalf("fanotify not chosen: %+v", m.Stats())
		}
		if inCalls != 0 || len(logs.warnings(t, "")) != 0 {
			t.Fatalf("inotify tried %d times; warnings %v", inCalls, logs.warnings(t, ""))
		}
	})
}
