package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/agent/event"
)

// waitExecutions polls osquery_schedule until query name ran at least n
// times.
func waitExecutions(t *testing.T, a *Agent, name string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := a.Engine().Query(context.Background(), "SELECT executions FROM osquery_schedule WHERE name = '"+name+"'")
		must(t, err)
		if len(res.Rows) == 1 && atoi64(res.Rows[0]["executions"]) >= n {
			return
		}
	}
	t.Fatalf("%s did not run %d times", name, n)
}

// TestCleanStopDeliversBufferedEvents: rows that arrive after the last
// scheduled run of an event query (hourly here) reach the server on a clean
// stop, each exactly once, and nothing is counted as lost.
func TestCleanStopDeliversBufferedEvents(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{
		"procs": {"query": "SELECT pid FROM process_events", "interval": 3600},
		"socks": {"query": "SELECT pid FROM socket_events WHERE pid > 0", "interval": 3600},
	}))
	buf := event.NewBuffer(event.BufferOptions{})
	data := t.TempDir()
	buf.Add("process_events", map[string]string{"pid": "1"})
	r := start(t, srv, data, fixtureRoot(t), func(o *Options) { o.EventBuffer = buf })
	waitExecutions(t, r.a, "procs", 1)
	waitExecutions(t, r.a, "socks", 1)
	const n = 40
	for i := 2; i <= n; i++ {
		buf.Add("process_events", map[string]string{"pid": itoa(i)})
		buf.Add("socket_events", map[string]string{"pid": itoa(i)})
	}
	r.stop(t)

	for _, q := range []string{"procs", "socks"} {
		seen := map[string]int{}
		for _, l := range linesOf(srv, q) {
			seen[l.Columns["pid"]]++
		}
		first := 1
		if q == "socks" {
			first = 2
		}
		for i := first; i <= n; i++ {
			if seen[itoa(i)] != 1 {
				t.Errorf("%s: pid %d delivered %d times, want 1", q, i, seen[itoa(i)])
			}
		}
		if len(seen) != n-first+1 {
			t.Errorf("%s: %d distinct rows, want %d", q, len(seen), n-first+1)
		}
	}
	if _, err := os.Stat(filepath.Join(data, checkpointFile)); !os.IsNotExist(err) {
		t.Errorf("event checkpoint left after a clean stop: %v", err)
	}
	if l := statusWith(srv, "not delivered"); len(l) != 0 {
		t.Errorf("clean stop reported undelivered rows: %+v", l)
	}
}

// TestUncleanStopCountsLostEvents kills an agent (SIGKILL) holding event
// rows that its hourly event query has not read yet; the next start reports
// them as lost, in a status line and in vigil_event_drops.
func TestUncleanStopCountsLostEvents(t *testing.T) {
	if os.Getenv("VIGIL_EVENT_CHILD") != "" {
		childEventAgent()
		return
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	must(t, os.WriteFile(cfg, schedule(map[string]map[string]any{
		"procs": {"query": "SELECT pid FROM process_events", "interval": 3600},
	}), 0o600))
	data := filepath.Join(dir, "data")
	root := fixtureRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestUncleanStopCountsLostEvents$")
	cmd.Env = append(os.Environ(), "VIGIL_EVENT_CHILD=1", "VIGIL_CFG="+cfg, "VIGIL_DATA="+data, "VIGIL_ROOT="+root)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	must(t, cmd.Start())
	cp := filepath.Join(data, checkpointFile)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(cp)
		if strings.Contains(string(b), `"process_events":25`) {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child never checkpointed its 25 undelivered rows (checkpoint %q)", b)
		}
	}
	must(t, cmd.Process.Kill())
	cmd.Wait()

	a, err := New(Options{DataDir: data, ConfigPath: cfg, Root: root, LoggerTLSPeriod: 50 * time.Millisecond, Logger: testLogger(t)})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx) }()
	waitExecutions(t, a, "procs", 1)
	res, err := a.Engine().Query(ctx, "SELECT buffer_dropped, lost FROM vigil_event_drops WHERE name = 'event_shutdown'")
	must(t, err)
	cancel()
	must(t, <-stopped)
	if len(res.Rows) != 1 || res.Rows[0]["buffer_dropped"] != "25" || res.Rows[0]["lost"] != "25" {
		t.Errorf("vigil_event_drops event_shutdown = %v, want 25 dropped", res.Rows)
	}
	b, _ := os.ReadFile(filepath.Join(data, "log", "osqueryd.status.log"))
	if !strings.Contains(string(b), "previous run stopped without a clean shutdown") || !strings.Contains(string(b), "rows_up_to=25") ||
		!strings.Contains(string(b), "tables=process_events:25") {
		t.Errorf("no status line counting the 25 lost rows:\n%s", b)
	}
	if _, err := os.Stat(cp); !os.IsNotExist(err) {
		t.Errorf("checkpoint still present after the report: %v", err)
	}
}

// childEventAgent runs an agent that buffers 25 rows after its event
// query's first run, then waits to be killed.
func childEventAgent() {
	buf := event.NewBuffer(event.BufferOptions{})
	a, err := New(Options{DataDir: os.Getenv("VIGIL_DATA"), ConfigPath: os.Getenv("VIGIL_CFG"), Root: os.Getenv("VIGIL_ROOT"), EventBuffer: buf})
	if err != nil {
		os.Exit(3)
	}
	go a.Run(context.Background())
	for {
		res, err := a.Engine().Query(context.Background(), "SELECT executions FROM osquery_schedule WHERE name = 'procs'")
		if err == nil && len(res.Rows) == 1 && res.Rows[0]["executions"] == "1" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 25; i++ {
		buf.Add("process_events", map[string]string{"pid": itoa(i)})
	}
	select {}
}

// logBuffer collects an agent's log output (Options.Logger) for tests.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestEventCheckpointWrite: the checkpoint is written whole through the
// shared temporary-file-and-rename helper, and a write that cannot complete
// (the name is taken by a directory) warns and leaves no temporary file.
func TestEventCheckpointWrite(t *testing.T) {
	buf := event.NewBuffer(event.BufferOptions{})
	var logs logBuffer
	dir := t.TempDir()
	a := configuredAgent(t, dir, map[string]any{
		"schedule": map[string]any{"procs": map[string]any{"query": "SELECT pid FROM process_events", "interval": 3600}},
	}, func(o *Options) { o.EventBuffer, o.Logger = buf, logs.logger() })
	path := filepath.Join(a.opts.DataDir, checkpointFile)

	for i := 0; i < 3; i++ {
		buf.Add("process_events", map[string]string{"pid": itoa(i)})
	}
	a.sched.checkpoint()
	b, err := os.ReadFile(path)
	must(t, err)
	var cp eventCheckpoint
	must(t, json.Unmarshal(b, &cp))
	if cp.Undelivered["process_events"] != 3 {
		t.Errorf("checkpoint %s, want 3 undelivered process_events rows", b)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left after a checkpoint: %v", err)
	}

	// The name taken by a non-empty directory: the rename fails.
	must(t, os.Remove(path))
	must(t, os.MkdirAll(filepath.Join(path, "x"), 0o700))
	buf.Add("process_events", map[string]string{"pid": "3"})
	a.sched.checkpoint()
	if !strings.Contains(logs.String(), "writing event checkpoint") {
		t.Errorf("no warning for a checkpoint that could not be written:\n%s", logs.String())
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left after a failed checkpoint: %v", err)
	}
}
