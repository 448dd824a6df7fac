package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/agent/event"
)

func TestEventCountersInStatusLog(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	buf := event.NewBuffer(event.BufferOptions{Max: 2})
	r := start(t, srv, t.TempDir(), fixtureRoot(t), func(o *Options) {
		o.EventBuffer = buf
		o.EventStatsInterval = 300 * time.Millisecond
	})
	for i := 0; i < 5; i++ {
		buf.Add("process_events", map[string]string{"pid": itoa(i)})
	}
	ok := srv.WaitFor(10*time.Second, func() bool {
		for _, s := range srv.Status() {
			if s.Severity == 1 && strings.Contains(s.Message, "event rows lost since last report: 3") &&
				strings.Contains(s.Message, "process_events added=5 buffered=2 dropped=3") {
				return true
			}
		}
		return false
	})
	r.stop(t)
	if !ok {
		t.Fatalf("no warning with the dropped counter: %+v", srv.Status())
	}
}

// TestEventTablesOfCounters: osquery_events and vigil_event_drops read the
// agent's buffer counters at query time.
func TestEventTablesOfCounters(t *testing.T) {
	buf := event.NewBuffer(event.BufferOptions{Max: 2})
	dir := t.TempDir()
	a, err := New(Options{DataDir: dir, ConfigPath: filepath.Join(dir, "none.conf"), EventBuffer: buf, Root: fixtureRoot(t)})
	must(t, err)
	defer a.Close()
	for i := 0; i < 5; i++ {
		buf.Add("socket_events", map[string]string{"pid": itoa(i)})
	}
	res, err := a.Engine().Query(context.Background(), `SELECT name, type, events, subscriptions, active FROM osquery_events WHERE name = 'socket_events'`)
	must(t, err)
	if len(res.Rows) != 1 || res.Rows[0]["events"] != "5" || res.Rows[0]["type"] != "subscriber" || res.Rows[0]["active"] != "0" {
		t.Errorf("osquery_events socket_events = %v", res.Rows)
	}
	res, err = a.Engine().Query(context.Background(), `SELECT name, buffered, buffer_dropped, lost FROM vigil_event_drops WHERE type = 'subscriber' ORDER BY name`)
	must(t, err)
	var got []string
	for _, r := range res.Rows {
		got = append(got, r["name"]+":"+r["buffered"]+":"+r["buffer_dropped"]+":"+r["lost"])
	}
	if want := "file_events:0:0:0 process_events:0:0:0 socket_events:2:3:3 user_events:0:0:0"; strings.Join(got, " ") != want {
		t.Errorf("vigil_event_drops subscribers %v, want %s", got, want)
	}
}

// TestAgentRealEvents runs the agent with real event sources (root): a
// process_events scheduled query logs an exec, and file_paths from the
// config feed file_events.
func TestAgentRealEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: real event sources need root")
	}
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	watched := t.TempDir()
	srv.SetConfig([]byte(`{"schedule":{"pe":{"query":"SELECT pid, cmdline FROM process_events WHERE cmdline LIKE '%vigil-agent-e2e%'","interval":1}},
		"file_paths":{"test":["` + watched + `/%%"]}}`))
	r := start(t, srv, t.TempDir(), "", func(o *Options) { o.Events = true })
	if !srv.WaitFor(10*time.Second, func() bool { return len(r.a.EventStats()) > 0 && srv.NodeKeys() == 1 }) {
		t.Fatal("agent did not start")
	}
	time.Sleep(500 * time.Millisecond)
	for _, s := range r.a.EventStats() {
		if strings.Contains(s.Error, "already delivered") {
			t.Skipf("skipping: another process holds the audit socket: %s", s.Error)
		}
	}
	if err := exec.Command("/bin/sh", "-c", "echo vigil-agent-e2e > "+filepath.Join(watched, "f")).Run(); err != nil {
		t.Fatal(err)
	}
	ok := srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "pe")) == 1 })
	var fileRows []map[string]string
	srv.WaitFor(5*time.Second, func() bool {
		fileRows, _ = r.a.Events().Rows("file_events", 0)
		return len(fileRows) >= 2
	})
	stats := r.a.EventStats()
	oe, oeErr := r.a.Engine().Query(context.Background(), `SELECT name, publisher, type, subscriptions, events, active FROM osquery_events`)
	r.stop(t)
	if !ok {
		t.Fatalf("no process_events result line; stats %+v", stats)
	}
	must(t, oeErr)
	byName := map[string]map[string]string{}
	for _, row := range oe.Rows {
		byName[row["name"]] = row
	}
	pub := byName["process_events"]["publisher"]
	if p := byName[pub]; pub == "" || p["type"] != "publisher" || p["active"] != "1" || p["events"] == "0" {
		t.Errorf("osquery_events: process_events fed by %q, publisher row %v (all: %v)", pub, p, oe.Rows)
	}
	if fe := byName["file_events"]; fe["active"] != "1" || fe["events"] == "0" || byName[fe["publisher"]]["subscriptions"] != "1" {
		t.Errorf("osquery_events file_events row %v (all: %v)", fe, oe.Rows)
	}
	if l := linesOf(srv, "pe")[0]; !strings.Contains(l.Columns["cmdline"], "/bin/sh -c echo vigil-agent-e2e") {
		t.Fatalf("cmdline %q", l.Columns["cmdline"])
	}
	if len(fileRows) < 2 || fileRows[0]["category"] != "test" {
		t.Fatalf("file_events rows %v; stats %+v", fileRows, stats)
	}
}
