package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const heavySQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300000) SELECT count(*) AS n FROM c"

// runWatchdog runs a heavy and a light query until done(heavy executions,
// heavy denylisted, light executions) holds (or 60 s pass).
func runWatchdog(t *testing.T, level, cpuPct int, done func(heavy, deny, light int64) bool) (execs, denylisted int64, status string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	must(t, os.WriteFile(cfg, schedule(map[string]map[string]any{
		"heavy": {"query": heavySQL, "interval": 1},
		"light": {"query": "SELECT 1 AS one", "interval": 1},
	}), 0o600))
	a, err := New(Options{DataDir: dir, ConfigPath: cfg, Root: fixtureRoot(t), LoggerTLSPeriod: 100 * time.Millisecond,
		WatchdogLevel: level, WatchdogUtilizationLimit: cpuPct, Logger: testLogger(t)})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx) }()
	var heavy, light int64
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		res, err := a.Engine().Query(ctx, "SELECT name, executions, denylisted FROM osquery_schedule")
		must(t, err)
		for _, r := range res.Rows {
			if r["name"] == "heavy" {
				heavy = atoi64(r["executions"])
				denylisted = atoi64(r["denylisted"])
			} else {
				light = atoi64(r["executions"])
			}
		}
		if done(heavy, denylisted, light) {
			break
		}
	}
	time.Sleep(1500 * time.Millisecond) // a denylisted query must not run again
	res, err := a.Engine().Query(ctx, "SELECT executions FROM osquery_schedule WHERE name = 'heavy'")
	must(t, err)
	heavy = atoi64(res.Rows[0]["executions"])
	cancel()
	must(t, <-stopped)
	if light < 2 {
		t.Errorf("light query ran %d times", light)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "log", "osqueryd.status.log"))
	return heavy, denylisted, string(b)
}

func atoi64(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestWatchdogDenylistsHeavyQuery(t *testing.T) {
	execs, deny, status := runWatchdog(t, 0, 1, func(h, d, l int64) bool { return d == 1 && l >= 2 })
	if execs != 1 || deny != 1 {
		t.Fatalf("heavy query: %d executions, denylisted %d; want 1 and 1", execs, deny)
	}
	if !strings.Contains(status, "denylisted for a day") || !strings.Contains(status, `heavy`) {
		t.Fatalf("no watchdog status line: %s", status)
	}
}

func TestWatchdogDisabled(t *testing.T) {
	execs, deny, _ := runWatchdog(t, -1, 1, func(h, d, l int64) bool { return h >= 2 })
	if execs < 2 || deny != 0 {
		t.Fatalf("watchdog -1: heavy ran %d times, denylisted %d", execs, deny)
	}
}
