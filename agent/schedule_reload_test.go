package agent

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestDenyAfterReloadReachesCurrentEntry: the watchdog trips the entry of
// a query that a config reload has just replaced (same name and SQL): the
// current entry is denylisted too, not only the persisted list.
func TestDenyAfterReloadReachesCurrentEntry(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"q": {"query": "SELECT 1 AS one", "interval": 1},
	}, nil)
	old := a.sched.byName(t, "q")
	a.sched.setConfig(context.Background(), a.currentConfig())
	if a.sched.byName(t, "q") == old {
		t.Fatal("the reload kept the entry: the test proves nothing")
	}
	a.sched.wd.trip(old, "cpu", a.watchdogLimits(), time.Second)
	if !denylisted(a, "q") {
		t.Fatal("denylisting the replaced entry did not reach the current schedule")
	}
	a.sched.runDue(context.Background())
	if n := a.sched.byName(t, "q").stats.Executions; n != 0 {
		t.Fatalf("denylisted query ran %d times", n)
	}
}

// TestReloadRacesTripAndRun: config reloads race with watchdog trips and
// runs of the replaced entries (run with -race). The trip and the runs'
// statistics survive into the schedule in force.
func TestReloadRacesTripAndRun(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"q": {"query": "SELECT 1 AS one", "interval": 1},
		"r": {"query": "SELECT 2 AS two", "interval": 1},
	}, nil)
	ctx := context.Background()
	const reloads = 200
	r := a.sched.byName(t, "r")
	q := a.sched.byName(t, "q")
	var wg sync.WaitGroup
	done := make(chan struct{})
	runs := 0
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 0; i < reloads; i++ {
			a.sched.setConfig(ctx, a.currentConfig())
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			a.sched.runQuery(ctx, r)
			runs++
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			a.sched.wd.trip(q, "memory", a.watchdogLimits(), 0)
		}
	}()
	wg.Wait()
	if !denylisted(a, "q") {
		t.Error("trip lost by the reloads")
	}
	if n := a.sched.byName(t, "r").stats.Executions; n != int64(runs) {
		t.Errorf("current entry shows %d executions, want %d", n, runs)
	}
}

// TestReloadPrunesDelivered: the event rows a query was given are
// forgotten when a reload removes the query, so that they do not pile up
// and do not count as waiting for it.
func TestReloadPrunesDelivered(t *testing.T) {
	a := scheduledAgent(t, t.TempDir(), map[string]map[string]any{
		"ev":   {"query": "SELECT * FROM process_events", "interval": 1},
		"kept": {"query": "SELECT pid FROM process_events", "interval": 1},
	}, nil)
	ctx := context.Background()
	a.sched.runQuery(ctx, a.sched.byName(t, "ev"))
	a.sched.runQuery(ctx, a.sched.byName(t, "kept"))
	delivered := func(name string) bool {
		a.sched.mu.Lock()
		defer a.sched.mu.Unlock()
		_, ok := a.sched.delivered[name]
		return ok
	}
	if !delivered("ev") || !delivered("kept") {
		t.Fatal("runs of event queries recorded nothing: the test proves nothing")
	}
	c := *a.currentConfig()
	c.Queries = nil
	for _, q := range a.currentConfig().Queries {
		if q.Name != "ev" {
			c.Queries = append(c.Queries, q)
		}
	}
	a.sched.setConfig(ctx, &c)
	if delivered("ev") {
		t.Error("delivered counts of a removed query kept")
	}
	if !delivered("kept") {
		t.Error("delivered counts of a kept query pruned")
	}
}
