package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/spool"
)

// TestConfigEventLimits: the config's events_max and events_expiry change
// the event buffer at runtime, as osquery's options override its flags: a
// lower events_max drops the oldest rows at once (counted in
// vigil_event_drops), events_expiry applies to the next query, and a config
// without them restores the flags' values.
func TestConfigEventLimits(t *testing.T) {
	now := time.Unix(2_000_000, 0)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	a := configuredAgent(t, dir, map[string]any{
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}},
	}, func(o *Options) {
		o.EventsMax, o.EventsExpiry, o.Now = 100, time.Hour, clock
	})
	if m, e := a.Events().Limits(); m != 100 || e != time.Hour {
		t.Fatalf("limits from Options: %d %v", m, e)
	}
	for i := 0; i < 30; i++ {
		a.Events().Add("process_events", map[string]string{"pid": itoa(i)})
	}
	now = now.Add(2 * time.Minute)
	for i := 30; i < 40; i++ {
		a.Events().Add("process_events", map[string]string{"pid": itoa(i)})
	}

	// A new config: events_max 20 (strings are accepted too, as osquery's
	// options), events_expiry 90 s.
	writeConfig(t, dir, map[string]any{
		"options":  map[string]any{"events_max": "20", "events_expiry": 90},
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}},
	})
	must(t, a.loadConfig(context.Background()))
	if m, e := a.Events().Limits(); m != 20 || e != 90*time.Second {
		t.Fatalf("limits after config: %d %v, want 20 90s", m, e)
	}
	drops := func() string {
		t.Helper()
		res, err := a.Engine().Query(context.Background(), "SELECT buffered, buffer_dropped, buffer_expired FROM vigil_event_drops WHERE name = 'process_events'")
		must(t, err)
		if len(res.Rows) != 1 {
			t.Fatalf("vigil_event_drops process_events: %v", res.Rows)
		}
		r := res.Rows[0]
		return r["buffered"] + "/" + r["buffer_dropped"] + "/" + r["buffer_expired"]
	}
	// Dropped at once (before any query of process_events): 40 -> 20.
	if got := drops(); got != "20/20/0" {
		t.Errorf("after events_max 20: buffered/dropped/expired %s, want 20/20/0", got)
	}
	// The 10 rows left of the first 30 are 2 min old: over 90 s, expired by
	// the next query.
	res, err := a.Engine().Query(context.Background(), "SELECT pid FROM process_events")
	must(t, err)
	if len(res.Rows) != 10 || res.Rows[0]["pid"] != "30" {
		t.Errorf("process_events after events_expiry 90: %d rows %v, want pids 30..39", len(res.Rows), res.Rows)
	}
	if got := drops(); got != "10/20/10" {
		t.Errorf("after the query: buffered/dropped/expired %s, want 10/20/10", got)
	}
	if msg := statusMessages(t, a.status); strings.Contains(msg, "option=events_") {
		t.Errorf("honoured event options reported as ignored: %s", msg)
	}

	// Not positive: the start value stays; absent: restored.
	writeConfig(t, dir, map[string]any{
		"options":  map[string]any{"events_max": 0, "events_expiry": 30},
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}},
	})
	must(t, a.loadConfig(context.Background()))
	if m, e := a.Events().Limits(); m != 100 || e != 30*time.Second {
		t.Errorf("events_max 0, events_expiry 30: limits %d %v, want 100 30s", m, e)
	}
	writeConfig(t, dir, map[string]any{
		"schedule": map[string]any{"q": map[string]any{"query": "SELECT 2 AS two", "interval": 60}},
	})
	must(t, a.loadConfig(context.Background()))
	if m, e := a.Events().Limits(); m != 100 || e != time.Hour {
		t.Errorf("config without event options: limits %d %v, want the flags' 100 1h", m, e)
	}
}

// writeConfig replaces the config file configuredAgent wrote in dir.
func writeConfig(t *testing.T, dir string, config map[string]any) {
	t.Helper()
	b, err := json.Marshal(config)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "c.json"), b, 0o600))
}

// TestConfigBufferedLogMaxZeroUnlimited: the config's buffered_log_max 0
// means unlimited, as in osquery's docs (cli-flags), not the start value;
// a positive value bounds both spools and a negative one is refused with a
// warning, leaving the bound in force.
func TestConfigBufferedLogMaxZeroUnlimited(t *testing.T) {
	dir := t.TempDir()
	sched := map[string]any{"q": map[string]any{"query": "SELECT 1 AS one", "interval": 60}}
	a := configuredAgent(t, dir, map[string]any{
		"options":  map[string]any{"buffered_log_max": 0},
		"schedule": sched,
	}, func(o *Options) { o.BufferedLogMax = 5 })
	fill := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			_, err := a.results.Append([]byte(`{"i":` + itoa(i) + `}`))
			must(t, err)
			_, err = a.status.Append([]byte(`{"s":` + itoa(i) + `}`))
			must(t, err)
		}
	}
	fill(20)
	for name, sp := range map[string]*spool.Spool{"result": a.results, "status": a.status} {
		if st := sp.Stats(); st.Dropped != 0 || st.Pending < 20 {
			t.Errorf("buffered_log_max 0: %s spool pending %d dropped %d, want all 20+ kept (unlimited)", name, st.Pending, st.Dropped)
		}
	}

	writeConfig(t, dir, map[string]any{"options": map[string]any{"buffered_log_max": "3"}, "schedule": sched})
	must(t, a.loadConfig(context.Background()))
	for name, sp := range map[string]*spool.Spool{"result": a.results, "status": a.status} {
		if st := sp.Stats(); st.Pending != 3 {
			t.Errorf("buffered_log_max 3: %s spool pending %d, want 3", name, st.Pending)
		}
	}

	writeConfig(t, dir, map[string]any{"options": map[string]any{"buffered_log_max": -1}, "schedule": sched})
	must(t, a.loadConfig(context.Background()))
	if msg := statusMessages(t, a.status); !strings.Contains(msg, "buffered_log_max is ignored") {
		t.Errorf("no warning for buffered_log_max -1: %s", msg)
	}
	fill(10)
	if st := a.results.Stats(); st.Pending != 3 {
		t.Errorf("buffered_log_max -1: result spool pending %d, want the previous bound 3", st.Pending)
	}
}
