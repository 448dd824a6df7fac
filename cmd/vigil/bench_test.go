package main

// Ingestion benchmarks of issue #5, through the real /log handler of the
// control plane (called in-process with ServeHTTP: no TLS or sockets, so
// the numbers are the server's own work):
//
//	go test -p 1 ./cmd/vigil ./ingest -run '^$' -bench 'Ingest|RawAppender' -benchtime 5x
//
// BenchmarkIngestAccept      accept + decode the request + WAL group commit (no store)
// BenchmarkIngestDuckDB      the same, drained end to end into DuckDB
// BenchmarkIngestClickHouse  end to end into ClickHouse (Debian's 18.16; skipped without it)
// BenchmarkIngestKafka       end to end WAL -> Kafka (kfake) -> consumer group -> DuckDB
// BenchmarkIngestServerRSS   the vigil binary with agents over TLS; peak RSS of the server
//
// Each reports events/s and events/cpu-s (process CPU time, user+system,
// over the timed part: the machine is shared, so wall-clock rates move with
// the neighbours' load). The raw DuckDB Appender rates to compare with
// are ingest's, run in the same command above (-p 1: one package at a
// time): BenchmarkRawAppenderSteady100k appends every op into one file as
// BenchmarkIngestDuckDB does, DuckDB's checkpoints included;
// BenchmarkRawAppender100k into a fresh file per op, its checkpoint not
// timed. The lines are process_events rows with columns in name order, as
// osquery writes them.
// VIGIL_BENCH_EVENTS sets events per op (default 100,000);
// VIGIL_BENCH_RSS_EVENTS the events of the RSS run (default 200,000; the
// issue's 10M-event run is VIGIL_BENCH_RSS_EVENTS=10000000);
// VIGIL_BENCH_SERVER_ARGS extra server flags for that run, e.g.
// "--store duckdb?memory_limit=256MB".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/store/clickhouse"
	"github.com/vigilhq/vigil/store/clickhouse/chtest"
	"github.com/vigilhq/vigil/store/duckdb"
)

const benchSecret = "bench-secret"

func benchEvents(b *testing.B, env string, def int) int {
	if s := os.Getenv(env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive integer", env, s)
		}
		return n
	}
	return def
}

// discard is a store that keeps nothing.
type discard struct{}

func (discard) Append(context.Context, vigil.Batch) error { return nil }

// benchStack is the control plane's handler over ingest with a WAL whose
// drainer appends to app (or, with drain false, does not run).
type benchStack struct {
	handler http.Handler
	ing     *ingest.Ingester
	wal     *wal.WAL
	keys    []string // node keys of enrolled hosts
	stop    func()
}

func newBenchStack(b *testing.B, app store.Appender, drain bool, hosts int) *benchStack {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), MaxBytes: 64 << 30})
	if err != nil {
		b.Fatal(err)
	}
	ing := ingest.New(ingest.Options{Appender: app, WAL: w})
	ctl, err := control.New(control.Options{State: st, Ingest: ing, EnrollSecret: benchSecret, Config: defaultConfig(time.Minute)})
	if err != nil {
		b.Fatal(err)
	}
	s := &benchStack{handler: ctl.Handler(), ing: ing, wal: w}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	if drain {
		go func() { defer close(done); ing.Run(rctx) }()
	} else {
		close(done)
	}
	s.stop = func() { cancel(); <-done; w.Close(); st.Close() }
	b.Cleanup(s.stop)
	for i := range hosts {
		body, _ := json.Marshal(osquery.EnrollRequest{EnrollSecret: benchSecret, HostIdentifier: fmt.Sprintf("bench-%02d", i)})
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest("POST", osquery.PathEnroll, bytes.NewReader(body)))
		var r osquery.EnrollResponse
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &r) != nil || r.NodeKey == "" {
			b.Fatalf("enroll: %d %s", rec.Code, rec.Body)
		}
		s.keys = append(s.keys, r.NodeKey)
	}
	return s
}

// bodies returns /log request bodies with n events in total, 500 lines
// each, spread over the enrolled hosts; round makes them distinct.
func (s *benchStack) bodies(round, n int) [][]byte {
	var out [][]byte
	for lo, req := 0, 0; lo < n; lo, req = lo+500, req+1 {
		k := min(500, n-lo)
		lines := make([]json.RawMessage, k)
		for j := range lines {
			lines[j] = faultLine(req%len(s.keys), round*1_000_000+req, lo+j)
		}
		body, _ := json.Marshal(osquery.LogRequest{NodeKey: s.keys[req%len(s.keys)], LogType: "result", Data: lines})
		out = append(out, body)
	}
	return out
}

// post sends the bodies from 8 goroutines through the handler; every
// answer must be 200.
func (s *benchStack) post(b *testing.B, bodies [][]byte) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed string
	next := make(chan []byte)
	for range 8 {
		wg.Go(func() {
			for body := range next {
				rec := httptest.NewRecorder()
				s.handler.ServeHTTP(rec, httptest.NewRequest("POST", osquery.PathLog, bytes.NewReader(body)))
				if rec.Code != 200 {
					mu.Lock()
					failed = fmt.Sprintf("%d %s", rec.Code, rec.Body)
					mu.Unlock()
				}
			}
		})
	}
	for _, body := range bodies {
		next <- body
	}
	close(next)
	wg.Wait()
	if failed != "" {
		b.Fatalf("/log answered %s", failed)
	}
}

// cpuTimer adds up process CPU time over the timed parts.
type cpuTimer struct{ total, at time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuTimer) start(b *testing.B) { c.at = processCPU(); b.StartTimer() }
func (c *cpuTimer) stop(b *testing.B)  { b.StopTimer(); c.total += processCPU() - c.at }

func (c *cpuTimer) report(b *testing.B, events int) {
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if c.total > 0 {
		b.ReportMetric(float64(events)*float64(b.N)/c.total.Seconds(), "events/cpu-s")
	}
}

// runIngestBench posts events per op and waits until wait says they are
// where they should be.
func runIngestBench(b *testing.B, s *benchStack, events int, wait func(ctx context.Context, total int) error) {
	var cpu cpuTimer
	b.StopTimer()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		bodies := s.bodies(n, events)
		cpu.start(b)
		s.post(b, bodies)
		if wait != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			err := wait(ctx, (n+1)*events)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		cpu.stop(b)
	}
	cpu.report(b, events)
}

// BenchmarkIngestAccept: /log handler -> request decode -> WAL group
// commit (fsync), nothing drained: the acknowledged rate.
func BenchmarkIngestAccept(b *testing.B) {
	events := benchEvents(b, "VIGIL_BENCH_EVENTS", 100_000)
	s := newBenchStack(b, discard{}, false, 10)
	runIngestBench(b, s, events, nil)
}

func openBenchDuckDB(b *testing.B) *duckdb.Store {
	st, err := duckdb.Open(context.Background(), duckdb.Options{Path: filepath.Join(b.TempDir(), "events.duckdb")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// storeCount waits until q's process_creation holds total rows.
func storeCount(q store.Querier) func(ctx context.Context, total int) error {
	return func(ctx context.Context, total int) error {
		for {
			r, err := q.Query(ctx, "SELECT count(*) FROM process_creation")
			if err == nil && toInt64(r.Rows[0][0]) >= int64(total) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("store did not reach %d events: %w (last error %v)", total, ctx.Err(), err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// BenchmarkIngestDuckDB: accept + WAL + drain into DuckDB, end to end.
func BenchmarkIngestDuckDB(b *testing.B) {
	events := benchEvents(b, "VIGIL_BENCH_EVENTS", 100_000)
	st := openBenchDuckDB(b)
	s := newBenchStack(b, st, true, 10)
	runIngestBench(b, s, events, func(ctx context.Context, total int) error { return s.ing.WaitDrained(ctx) })
	if err := storeCount(st)(context.Background(), events*b.N); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIngestClickHouse: accept + WAL + drain into ClickHouse.
func BenchmarkIngestClickHouse(b *testing.B) {
	events := benchEvents(b, "VIGIL_BENCH_EVENTS", 100_000)
	ctx := context.Background()
	ch, err := chtest.Start(ctx, b.TempDir())
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(ch.Stop)
	st, err := clickhouse.Open(ctx, clickhouse.Options{URL: ch.URL, Database: "vigil_bench"})
	if err != nil {
		b.Fatal(err)
	}
	s := newBenchStack(b, st, true, 10)
	runIngestBench(b, s, events, func(ctx context.Context, total int) error { return s.ing.WaitDrained(ctx) })
	if err := storeCount(st)(ctx, events*b.N); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIngestKafka: accept + WAL + produce to Kafka (kfake, in
// process) + consumer group + DuckDB; timed until DuckDB has every event.
func BenchmarkIngestKafka(b *testing.B) {
	events := benchEvents(b, "VIGIL_BENCH_EVENTS", 100_000)
	const topic = "vigil-bench"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	cfg, err := parseStreamURL("kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + topic)
	if err != nil {
		b.Fatal(err)
	}
	st := openBenchDuckDB(b)
	p, cons, err := openStream(cfg, st, true, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cons.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; cons.Close(); p.Close() })
	s := newBenchStack(b, p, true, 10)
	runIngestBench(b, s, events, func(ctx context.Context, total int) error {
		if err := s.ing.WaitDrained(ctx); err != nil {
			return err
		}
		return storeCount(st)(ctx, total)
	})
}

// BenchmarkIngestServerRSS runs the vigil binary (DuckDB store) with 10
// agents posting over TLS and reports the server's peak resident memory
// (VmHWM) and its CPU time per event. VIGIL_BENCH_RSS_EVENTS sets the
// size (default 200,000; the run is 10,000,000).
func BenchmarkIngestServerRSS(b *testing.B) {
	events := benchEvents(b, "VIGIL_BENCH_RSS_EVENTS", 200_000)
	b.StopTimer()
	b.ResetTimer()
	for range b.N {
		dir := b.TempDir()
		srv := newServerProc(b, dir, strings.Fields(os.Getenv("VIGIL_BENCH_SERVER_ARGS"))...)
		srv.start()
		pid := srv.cmd.Process.Pid
		// Sample until the process exits: the peak may come while it
		// drains at shutdown.
		var hwm int64
		var cpu time.Duration
		var mu sync.Mutex
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				h, c := procStats(pid)
				mu.Lock()
				if h > 0 {
					hwm, cpu = h, c
				}
				mu.Unlock()
				select {
				case <-srv.exited:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
		agents := runAgents(ctx, b, dir, "https://"+srv.listen, 10, events, 500)
		cancel()
		acked := time.Since(start)
		// The store lags the acknowledgements by up to the WAL bound:
		// the run ends when the WAL has nothing unreleased.
		for walUnreleased(dir) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(events)/acked.Seconds(), "acked-events/s")
		sent, _, s503 := agentTotals(agents)
		srv.stop()
		<-sampled
		rows, distinct := countEvents(b, dir)
		if sent != int64(events) || rows != int64(events) || distinct != int64(events) {
			b.Fatalf("sent %d, stored %d rows (%d distinct); want %d", sent, rows, distinct, events)
		}
		b.ReportMetric(float64(hwm)/1024, "peak-RSS-MB")
		b.ReportMetric(float64(events)/cpu.Seconds(), "events/server-cpu-s")
		b.ReportMetric(float64(s503), "503s")
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// procStats reads a process's peak RSS (KiB) and CPU time.
func procStats(pid int) (hwmKiB int64, cpu time.Duration) {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwmKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := bytes.LastIndexByte(stat, ')'); i > 0 {
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 13 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
		}
	}
	return hwmKiB, cpu
}
