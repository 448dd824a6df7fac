package web

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/metrics"
	"github.com/vigilhq/vigil/state"
)

func TestStatusQueryMatchesIngest(t *testing.T) {
	if statusQuery != ingest.StatusQuery {
		t.Fatalf("web reads status lines as %q, ingest stores them as %q", statusQuery, ingest.StatusQuery)
	}
}

// A counters line as agent.eventCounters writes it.
const countersLine = "event rows lost since last report: 7; event counters: audit events=120 kernel_lost=3 socket_overflows=0 queue_dropped=4 sequence_gaps=0 incomplete=1 proc_gone=2; " +
	"fanotify inactive (not root); process_events added=100 buffered=20 dropped=0 expired=5"

func TestParseEventCounters(t *testing.T) {
	got, lost := parseEventCounters(countersLine)
	if lost != 7 {
		t.Errorf("lost = %d, want 3+4 = 7", lost)
	}
	want := "[{audit map[events:120 incomplete:1 kernel_lost:3 proc_gone:2 queue_dropped:4 sequence_gaps:0 socket_overflows:0] } " +
		"{fanotify map[] not root} {process_events map[added:100 buffered:20 dropped:0 expired:5] }]"
	if fmt.Sprint(got) != want {
		t.Errorf("counters\n got %v\nwant %s", got, want)
	}
	for _, msg := range []string{"", "something else", "event counters: ", "event counters: no event source", "event counters: x y=z; ;;"} {
		got, lost := parseEventCounters(msg)
		if len(got) != 0 || lost != 0 {
			t.Errorf("%q = %v %d, want nothing", msg, got, lost)
		}
	}
}

func FuzzParseEventCounters(f *testing.F) {
	f.Add(countersLine)
	f.Add("event counters: a inactive")
	f.Add("event counters: a b=18446744073709551616 c=-1 d=1")
	f.Fuzz(func(t *testing.T, msg string) {
		got, _ := parseEventCounters(msg)
		for _, sc := range got {
			if sc.Source == "" || (sc.Inactive == "" && len(sc.Counters) == 0) {
				t.Fatalf("%q gave an empty source %+v", msg, sc)
			}
		}
	})
}

func TestHostHealth(t *testing.T) {
	cs, mod := withConsole(t)
	e := newEnv(t, mod)
	ctx := context.Background()
	h, _, err := e.db.EnrollHost(ctx, vigil.Host{Identifier: "hh", Hostname: "hh", LastSeen: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	status := func(id string, sec int, sev, msg string) vigil.ResultRow {
		return vigil.ResultRow{ID: id, HostID: h.ID, Hostname: "hh", Query: ingest.StatusQuery, Action: ingest.ActionStatus,
			Time: at.Add(time.Duration(sec) * time.Second), Columns: map[string]string{"severity": sev, "message": msg, "filename": "events.go", "line": "42"}}
	}
	if err := cs.store.Append(ctx, vigil.Batch{Results: []vigil.ResultRow{
		status("s1", 0, "0", "event counters: audit events=1 kernel_lost=0"),
		status("s2", 10, "1", countersLine),
		status("s3", 20, "1", "events: audit netlink unavailable"),
		{ID: "other", HostID: "someone-else", Query: ingest.StatusQuery, Action: ingest.ActionStatus, Time: at.Add(time.Minute),
			Columns: map[string]string{"severity": "2", "message": "event counters: audit events=9 kernel_lost=999"}},
	}}); err != nil {
		t.Fatal(err)
	}
	var hh HostHealth
	r := e.do("GET", "/api/v1/hosts/"+h.ID+"/health", e.tokens[state.RoleViewer], nil)
	r.decode(t, &hh)
	if r.status != 200 || hh.Lost != 7 || len(hh.Counters) != 3 || !hh.CountersAt.Equal(at.Add(10*time.Second)) || !hh.Online {
		t.Fatalf("health = %d %+v", r.status, hh)
	}
	if len(hh.Lines) != 3 || hh.Lines[0].Message != "events: audit netlink unavailable" || hh.Lines[0].Severity != 1 || hh.Lines[0].Line != 42 {
		t.Errorf("lines %+v", hh.Lines)
	}
	r = e.do("GET", "/api/v1/hosts/"+h.ID+"/health?limit=1", e.tokens[state.RoleViewer], nil)
	r.decode(t, &hh)
	if len(hh.Lines) != 1 || hh.Lost != 7 {
		t.Errorf("limit=1: %+v", hh)
	}
	for _, q := range []string{"limit=0", "limit=abc", "limit=1000"} {
		if r := e.do("GET", "/api/v1/hosts/"+h.ID+"/health?"+q, e.tokens[state.RoleViewer], nil); r.status != 400 {
			t.Errorf("%s = %d", q, r.status)
		}
	}
	if r := e.do("GET", "/api/v1/hosts/nope/health", e.tokens[state.RoleViewer], nil); r.status != 404 {
		t.Errorf("unknown host = %d", r.status)
	}
	// A host that reported nothing has empty lists, not null.
	quiet, _, _ := e.db.EnrollHost(ctx, vigil.Host{Identifier: "quiet", Hostname: "quiet"})
	r = e.do("GET", "/api/v1/hosts/"+quiet.ID+"/health", e.tokens[state.RoleViewer], nil)
	if b := string(r.body); r.status != 200 || strings.Contains(b, `"counters":null`) || strings.Contains(b, `"lines":null`) {
		t.Errorf("quiet host = %d %s", r.status, r.body)
	}
}

// TestAgentDrops sums each host's latest counters line of the window per
// source and feeds metrics' vigil_agent_dropped_events.
func TestAgentDrops(t *testing.T) {
	cs, mod := withConsole(t)
	var mu sync.Mutex
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, func(c *control.Options, o *Options) { mod(c, o); o.Now = clock })
	ctx := context.Background()
	line := func(id, host string, ago time.Duration, msg string) vigil.ResultRow {
		return vigil.ResultRow{ID: id, HostID: host, Query: ingest.StatusQuery, Action: ingest.ActionStatus, Time: now.Add(-ago),
			Columns: map[string]string{"severity": "0", "message": msg}}
	}
	if err := cs.store.Append(ctx, vigil.Batch{Results: []vigil.ResultRow{
		line("a1", "h1", 10*time.Minute, "event counters: audit events=5 kernel_lost=100"), // superseded by a2
		line("a2", "h1", 2*time.Minute, "event rows lost since last report: 9; event counters: audit events=9 kernel_lost=3 queue_dropped=4 incomplete=7; process_events added=3 dropped=2 expired=1"),
		line("a3", "h1", time.Minute, "events: audit backlog high"), // not a counters line
		line("b1", "h2", 4*time.Minute, "event counters: audit events=1 kernel_lost=10; fanotify inactive (not root); process_events added=1 dropped=0 expired=5"),
		line("c1", "h3", 20*time.Minute, "event counters: audit events=1 kernel_lost=1000"), // silent since: out of the window
	}}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{AgentDrops: e.api.AgentDrops})
	gauge := func() map[string]float64 {
		t.Helper()
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			if f.GetName() != "vigil_agent_dropped_events" {
				continue
			}
			for _, s := range f.GetMetric() {
				if len(s.GetLabel()) != 1 || s.GetLabel()[0].GetName() != "source" {
					t.Fatalf("labels %v: want source only", s.GetLabel())
				}
				out[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
		return out
	}
	if got := fmt.Sprint(gauge()); got != "map[audit:17 process_events:2]" {
		t.Errorf("drops %s, want audit 3+4+10, process_events 2, no inactive source", got)
	}
	// A newer report is seen once the 30 s cache has passed.
	if err := cs.store.Append(ctx, vigil.Batch{Results: []vigil.ResultRow{
		line("b2", "h2", 30*time.Second, "event counters: audit events=2 kernel_lost=50; process_events added=1 dropped=1"),
	}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(gauge()); got != "map[audit:17 process_events:2]" {
		t.Errorf("within the cache: %s", got)
	}
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	if got := fmt.Sprint(gauge()); got != "map[audit:57 process_events:3]" {
		t.Errorf("after the cache: %s, want audit 7+50, process_events 2+1", got)
	}
	// Without an event store the metric is an error, not a zero.
	bare := newEnv(t, nil)
	if _, err := bare.api.AgentDrops(ctx); err == nil {
		t.Error("AgentDrops without an event store succeeded")
	}
}
