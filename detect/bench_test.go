package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store/duckdb"
)

// latencyProbe records, for every alert opened, the time from the moment
// its event was handed to ingestion (stamped into the command line) to
// the moment the engine handed the committed alert on, and the
// store-side latency (ingested_at → alert) the engine reports.
type latencyProbe struct {
	mu       sync.Mutex
	endToEnd []time.Duration
	store    []time.Duration
}

func (p *latencyProbe) Notify(_ context.Context, alerts []vigil.Alert) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range alerts {
		cmd, _ := a.Fields["process_command_line"].(string)
		if i := strings.Index(cmd, " t="); i >= 0 {
			if ns, err := strconv.ParseInt(cmd[i+3:], 10, 64); err == nil {
				p.endToEnd = append(p.endToEnd, now.Sub(time.Unix(0, ns)))
			}
		}
	}
}

func (p *latencyProbe) RuleRun(string, time.Duration, int) {}

func (p *latencyProbe) AlertLatency(_ string, l time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.store = append(p.store, l)
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

// BenchmarkDetectionLatency drives 10,000 process events per second
// through the real ingest path (osquery result lines → WAL group commit →
// drainer → DuckDB file) while the engine runs 100 Sigma rules every
// interval with the SQLite state; 1% of the events match one of the
// rules. One iteration is one second of load: run with -benchtime=20x
// for a 20 s sample. Reported: end-to-end latency (event accepted by
// ingest → alert committed) and store latency (ingested_at → alert)
// p50/p99 in ms, the event rate achieved and the alerts raised.
func BenchmarkDetectionLatency(b *testing.B) {
	for _, iv := range []time.Duration{250 * time.Millisecond, detect.DefaultInterval} {
		b.Run("interval="+iv.String(), func(b *testing.B) { benchLatency(b, iv) })
	}
}

func benchLatency(b *testing.B, interval time.Duration) {
	const (
		rules     = 100
		perSecond = 10_000
		tick      = 10 * time.Millisecond
	)
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal")})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ing := ingest.New(ingest.Options{Appender: st, WAL: w, QueryTable: func(string) string { return "process_events" }})
	drained := make(chan struct{})
	ingCtx, stopIng := context.WithCancel(context.Background())
	go func() { ing.Run(ingCtx); close(drained) }()
	defer func() { stopIng(); <-drained }()

	sdb, err := state.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sdb.Close()
	probe := &latencyProbe{}
	eng := detect.New(detect.Options{Querier: st, Dialect: st.Dialect(), State: sdb, Interval: interval, Notifier: probe, Observer: probe})
	fsys := fstest.MapFS{}
	for i := 0; i < rules; i++ {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		fsys[fmt.Sprintf("r/%03d.yml", i)] = &fstest.MapFile{Data: []byte(rule(id, fmt.Sprintf("Bench %d", i), "process_creation",
			fmt.Sprintf("  sel:\n    CommandLine|contains: 'marker-%03d '\n  condition: sel", i)))}
	}
	if errs := eng.Load(fsys, "r"); len(errs) > 0 {
		b.Fatal(errs)
	}
	engDone := make(chan struct{})
	engCtx, stopEng := context.WithCancel(ctx)
	go func() { eng.Run(engCtx); close(engDone) }()
	defer func() { stopEng(); <-engDone }()

	host := vigil.Host{ID: "bench-host", Identifier: "bench", Hostname: "bench.example"}
	sent, matching := 0, 0
	line := func(n int) json.RawMessage {
		cmd := fmt.Sprintf("/usr/bin/python3 worker.py --job %d", n)
		if n%100 == 0 {
			cmd = fmt.Sprintf("sh -c marker-%03d t=%d", (n/100)%rules, time.Now().UnixNano())
			matching++
		}
		l, _ := json.Marshal(osquery.ResultLine{Name: "process_events", HostIdentifier: host.Identifier, UnixTime: osquery.Int(time.Now().Unix()),
			Epoch: 1, Counter: osquery.Int(n), Action: "added", Columns: map[string]string{"pid": strconv.Itoa(n), "path": "/usr/bin/python3",
				"cmdline": cmd, "parent": "1", "uid": "1000", "euid": "1000", "auid": "1000", "gid": "1000", "egid": "1000",
				"cwd": "/srv", "time": strconv.FormatInt(time.Now().Unix(), 10), "syscall": "execve"}})
		return l
	}
	b.ResetTimer()
	start := time.Now()
	total := b.N * perSecond
	t := time.NewTicker(tick)
	for sent < total {
		<-t.C
		// Catch up on ticks lost to a busy machine: the rate is what
		// matters, batches may grow.
		due := min(total, int(time.Since(start).Seconds()*perSecond))
		if due <= sent {
			continue
		}
		lines := make([]json.RawMessage, 0, due-sent)
		for sent < due {
			lines = append(lines, line(sent))
			sent++
		}
		if err := ing.Log(ctx, host, "result", lines); err != nil {
			b.Fatal(err)
		}
	}
	t.Stop()
	elapsed := time.Since(start)
	// Let detection catch up with the last events.
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe.mu.Lock()
		n := len(probe.endToEnd)
		probe.mu.Unlock()
		if n >= matching || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if len(probe.endToEnd) != matching {
		b.Errorf("%d alerts for %d matching events", len(probe.endToEnd), matching)
	}
	b.ReportMetric(float64(quantile(probe.endToEnd, 0.5))/1e6, "e2e-p50-ms")
	b.ReportMetric(float64(quantile(probe.endToEnd, 0.99))/1e6, "e2e-p99-ms")
	b.ReportMetric(float64(quantile(probe.store, 0.5))/1e6, "store-p50-ms")
	b.ReportMetric(float64(quantile(probe.store, 0.99))/1e6, "store-p99-ms")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(len(probe.endToEnd)), "alerts")
	var runs int64
	var busy time.Duration
	for _, rs := range eng.Stats() {
		runs = max(runs, rs.Runs)
		busy += rs.TotalTime
	}
	if runs > 0 {
		b.ReportMetric(float64(busy)/float64(runs)/1e6, "run-ms")
	}
	b.ReportMetric(0, "ns/op")
}
