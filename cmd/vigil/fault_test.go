package main

// Fault tests with real processes (issue #5): the vigil binary is built
// with `go build`, run as a child process and killed, starved of its store
// or of disk, while simulated osquery agents in the test send events the
// way a real agent's spool does (every batch retried until a 2xx). At the
// end the store must hold every event exactly once.
//
// They are slow (minutes) and skipped with -short.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigilhq/vigil/state/pgtest"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/store/clickhouse"
	"github.com/vigilhq/vigil/store/clickhouse/chtest"
	"github.com/vigilhq/vigil/store/duckdb"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// TestMain removes the binary vigilBinary built.
func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if buildBin != "" {
		os.RemoveAll(filepath.Dir(buildBin))
	}
	os.Exit(code)
}

// vigilBinary builds ./cmd/vigil once per test process.
func vigilBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-fault-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "vigil")
		out, err := exec.Command("go", "build", "-o", buildBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverProc is one `vigil server` child process; its output is appended
// to a log file shared by every start on the same data directory.
type serverProc struct {
	t       testing.TB
	bin     string
	dir     string
	listen  string
	args    []string
	logPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

func newServerProc(t testing.TB, dir string, args ...string) *serverProc {
	return &serverProc{
		t: t, bin: vigilBinary(t), dir: dir, args: args,
		listen:  fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)),
		logPath: filepath.Join(t.TempDir(), "server.log"),
	}
}

// start runs the server and waits until /healthz answers.
func (s *serverProc) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	args := append([]string{"server", "--data-dir", s.dir, "--listen", s.listen}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); logf.Close(); close(s.exited) }()
	s.t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s.healthy() {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("vigil server exited at start:\n%s", s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("vigil server not up after 60s:\n%s", s.logTail())
		}
	}
}

func (s *serverProc) healthy() bool {
	c, err := agentClient(s.dir)
	if err != nil {
		return false
	}
	resp, err := c.Get("https://" + s.listen + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// kill sends SIGKILL and waits for the exit.
func (s *serverProc) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (s *serverProc) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Fatalf("vigil server did not stop within 60s of SIGTERM:\n%s", s.logTail())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("vigil server exited with %d after SIGTERM:\n%s", code, s.logTail())
	}
}

func (s *serverProc) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *serverProc) logTail() string {
	l := s.log()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	return l
}

// agentClient trusts the CA of a data directory, as an agent given the
// CA file does.
func agentClient(dir string) (*http.Client, error) {
	p, err := readProfile(dir)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate")
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 4},
	}, nil
}

// simAgent is a simulated osquery agent: it enrolls with the data
// directory's secret and posts process_events lines to /log in batches,
// retrying each batch until the server answers 2xx (re-enrolling when the
// node key is refused), as osquery's TLS logger with its spool does.
type simAgent struct {
	id      int
	url     string
	secret  string
	client  *http.Client
	nodeKey string

	sent, retries, status503 atomic.Int64
	retryAfter               atomic.Int64 // 503s that carried Retry-After
	errBodies                sync.Map     // status code -> a body seen with it
}

func (a *simAgent) post(ctx context.Context, path string, body any, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", a.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if out != nil && resp.StatusCode/100 == 2 {
		json.Unmarshal(data, out)
	}
	if resp.StatusCode/100 != 2 {
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
			a.retryAfter.Add(1)
		}
		a.errBodies.LoadOrStore(resp.StatusCode, string(bytes.TrimSpace(data)))
		return resp.StatusCode, fmt.Errorf("%s: %d %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode, nil
}

func (a *simAgent) enroll(ctx context.Context) error {
	var r osquery.EnrollResponse
	if _, err := a.post(ctx, osquery.PathEnroll, osquery.EnrollRequest{
		EnrollSecret: a.secret, HostIdentifier: fmt.Sprintf("fault-agent-%02d", a.id), PlatformType: "9",
	}, &r); err != nil {
		return err
	}
	if r.NodeKey == "" || r.NodeInvalid {
		return errors.New("enroll refused")
	}
	a.nodeKey = r.NodeKey
	return nil
}

// send delivers one batch, retrying until a 2xx or ctx ends.
func (a *simAgent) send(ctx context.Context, lines []json.RawMessage) error {
	backoff := 50 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if a.nodeKey == "" {
			if err := a.enroll(ctx); err != nil {
				a.retries.Add(1)
				sleepCtx(ctx, backoff)
				continue
			}
		}
		var r osquery.NodeInvalidResponse
		code, err := a.post(ctx, osquery.PathLog, osquery.LogRequest{NodeKey: a.nodeKey, LogType: "result", Data: lines}, &r)
		if err == nil && !r.NodeInvalid {
			a.sent.Add(int64(len(lines)))
			return nil
		}
		if err == nil || code == http.StatusUnauthorized {
			a.nodeKey = "" // node_invalid: enroll again
		}
		if code == http.StatusServiceUnavailable {
			a.status503.Add(1)
		}
		if err != nil && os.Getenv("VIGIL_FAULT_DEBUG") != "" {
			fmt.Fprintln(os.Stderr, "agent", a.id, "send:", err)
		}
		a.retries.Add(1)
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// faultLine is one process_events result line, distinct for each
// (agent, counter, row). Its time moves on with the counter, as a real
// agent's does (stores prune their duplicate checks by time).
func faultLine(agent, counter, row int) json.RawMessage {
	at := int64(1767225600 + counter)
	b := make([]byte, 0, 512)
	b = append(b, `{"name":"process_events","hostIdentifier":"fault-agent-`...)
	b = strconv.AppendInt(b, int64(agent), 10)
	b = append(b, `","calendarTime":"","unixTime":`...)
	b = strconv.AppendInt(b, at, 10)
	b = append(b, `,"epoch":1,"counter":`...)
	b = strconv.AppendInt(b, int64(counter), 10)
	// Columns in name order, as osquery writes them.
	b = append(b, `,"numerics":false,"action":"added","columns":{"cmdline":"/usr/bin/python3 -c 'import os; os.system(\"id `...)
	b = strconv.AppendInt(b, int64(row), 10)
	b = append(b, `\")'","cwd":"/home/u","egid":"1000","euid":"1000","gid":"1000","parent":"1","path":"/usr/bin/python3","pid":"`...)
	b = strconv.AppendInt(b, int64(row), 10)
	b = append(b, `","syscall":"execve","time":"`...)
	b = strconv.AppendInt(b, at, 10)
	b = append(b, `","uid":"1000"}}`...)
	return b
}

// runAgents runs n agents that send total events in batches of batch
// lines and returns when all are delivered (or ctx ends).
func runAgents(ctx context.Context, t testing.TB, dir, url string, n, total, batch int) []*simAgent {
	t.Helper()
	secret, err := os.ReadFile(filepath.Join(dir, "enroll_secret"))
	if err != nil {
		t.Fatal(err)
	}
	agents := make([]*simAgent, n)
	var wg sync.WaitGroup
	for i := range agents {
		c, err := agentClient(dir)
		if err != nil {
			t.Fatal(err)
		}
		a := &simAgent{id: i, url: url, secret: strings.TrimSpace(string(secret)), client: c}
		agents[i] = a
		per := total / n
		if i < total%n {
			per++
		}
		wg.Go(func() {
			counter := 0
			for done := 0; done < per && ctx.Err() == nil; {
				k := min(batch, per-done)
				lines := make([]json.RawMessage, k)
				for j := range lines {
					lines[j] = faultLine(a.id, counter, done+j)
				}
				if a.send(ctx, lines) != nil {
					return
				}
				counter++
				done += k
			}
		})
	}
	wg.Wait()
	return agents
}

// errAnswers lists an error answer per status code the agents saw.
func errAnswers(agents []*simAgent) string {
	m := map[int]string{}
	for _, a := range agents {
		a.errBodies.Range(func(k, v any) bool { m[k.(int)] = v.(string); return true })
	}
	return fmt.Sprint(m)
}

func agentTotals(agents []*simAgent) (sent, retries, s503 int64) {
	for _, a := range agents {
		sent += a.sent.Load()
		retries += a.retries.Load()
		s503 += a.status503.Load()
	}
	return
}

// countEvents opens the data directory's DuckDB file (the server must be
// stopped) and returns the rows and distinct event ids of process_creation.
func countEvents(t testing.TB, dir string) (rows, distinct int64) {
	t.Helper()
	ctx := context.Background()
	s, err := duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Query(ctx, "SELECT count(*), count(DISTINCT event_id) FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	return r.Rows[0][0].(int64), r.Rows[0][1].(int64)
}

// walUnreleased is the bytes of WAL records in a data directory that the
// store (or Kafka) has not confirmed yet, from the segment files and the
// WAL's released checkpoint (16 bytes: segment, offset, little endian).
func walUnreleased(dir string) int64 {
	var relSeg uint64
	var relOff int64
	if b, err := os.ReadFile(filepath.Join(dir, "wal", "released")); err == nil && len(b) == 16 {
		relSeg = binary.LittleEndian.Uint64(b)
		relOff = int64(binary.LittleEndian.Uint64(b[8:]))
	}
	var n int64
	ents, _ := os.ReadDir(filepath.Join(dir, "wal"))
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		fi, ierr := e.Info()
		if err != nil || ierr != nil {
			continue
		}
		switch {
		case id == relSeg:
			n += max(fi.Size()-relOff, 0)
		case id > relSeg:
			n += fi.Size()
		}
	}
	return n
}

func faultEvents(t testing.TB, def int) int {
	if s := os.Getenv("VIGIL_FAULT_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("VIGIL_FAULT_EVENTS=%q: want a positive integer", s)
		}
		return n
	}
	return def
}

// TestFaultKill9: the server is killed with SIGKILL every 2-4 s while 10
// agents send 1,000,000 events (VIGIL_FAULT_EVENTS to change); after a
// clean stop the store holds each of them exactly once.
func TestFaultKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: minutes of real processes; skipped with -short")
	}
	total := faultEvents(t, 1_000_000)
	dir := t.TempDir()
	// A bounded WAL also exercises the 503 path while the store catches up.
	srv := newServerProc(t, dir, "--wal-max-bytes", strconv.Itoa(64<<20))
	srv.start()
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	done := make(chan []*simAgent, 1)
	go func() { done <- runAgents(ctx, t, dir, "https://"+srv.listen, 10, total, 500) }()

	// Each life of the server must release at least one WAL batch into
	// the store, or a server killed faster than it can append would never
	// make progress (a livelock, not a loss): a kill waits for that, up to
	// 60 s, and the test counts the waits.
	kills, waits := 0, 0
	released := func() string { b, _ := os.ReadFile(filepath.Join(dir, "wal", "released")); return string(b) }
	var agents []*simAgent
loop:
	for {
		before := released()
		select {
		case agents = <-done:
			break loop
		case <-time.After(time.Duration(2000+rand.IntN(2000)) * time.Millisecond):
			if released() == before && walUnreleased(dir) > 0 {
				waits++
				waitFor(60*time.Second, func() bool { return released() != before })
			}
			srv.kill()
			kills++
			srv.start()
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("agents did not finish in time: %v", ctx.Err())
	}
	sent, retries, s503 := agentTotals(agents)
	sendTime := time.Since(start)
	// Everything is acknowledged; a clean stop drains what it can in 10 s
	// and the rest is replayed at the next start: stop, check, and start
	// again while the WAL still holds records.
	srv.stop()
	rounds := 1
	rows, distinct := countEvents(t, dir)
	for rows < int64(total) && walUnreleased(dir) > 0 && rounds < 10 {
		srv.start()
		time.Sleep(5 * time.Second)
		srv.stop()
		rounds++
		rows, distinct = countEvents(t, dir)
	}
	t.Logf("%d events from 10 agents in %s with %d kill -9s (%d waited for the drainer to release a batch first; %d retries, %d answered 503); %d clean stop(s) to drain; total %s",
		sent, sendTime.Round(time.Millisecond), kills, waits, retries, s503, rounds, time.Since(start).Round(time.Millisecond))
	if sent != int64(total) {
		t.Errorf("agents delivered %d events, want %d", sent, total)
	}
	if rows != int64(total) || distinct != int64(total) {
		t.Fatalf("process_creation: %d rows, %d distinct events; want exactly %d of each\n%s", rows, distinct, total, srv.logTail())
	}
	if kills == 0 {
		t.Errorf("the server was never killed: the run was too short to test anything")
	}
}

// startAgents runs runAgents in the background.
func startAgents(ctx context.Context, t *testing.T, dir, url string, n, total, batch int) <-chan []*simAgent {
	done := make(chan []*simAgent, 1)
	go func() { done <- runAgents(ctx, t, dir, url, n, total, batch) }()
	return done
}

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

// TestFaultClickHouseOutage: with --store clickhouse://, ClickHouse is
// paused (SIGSTOP) and later killed and restarted on the same data
// directory while agents send. The WAL holds the batches, /log answers
// 503 with Retry-After once the WAL reaches --wal-max-bytes, and
// everything reaches ClickHouse exactly once after it returns.
func TestFaultClickHouseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: real processes; skipped with -short")
	}
	ctx := context.Background()
	ch, err := chtest.Start(ctx, t.TempDir())
	if errors.Is(err, chtest.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	total := faultEvents(t, 200_000)
	dir := t.TempDir()
	chURL := strings.Replace(ch.URL, "http://", "clickhouse://", 1) + "/vigil_fault"
	srv := newServerProc(t, dir, "--store", chURL, "--wal-max-bytes", strconv.Itoa(32<<20))
	srv.start()

	actx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	// Agents are built here so the test can watch their counters.
	secret, err := os.ReadFile(filepath.Join(dir, "enroll_secret"))
	if err != nil {
		t.Fatal(err)
	}
	const nAgents = 5
	agents := make([]*simAgent, nAgents)
	var wg sync.WaitGroup
	for i := range agents {
		c, err := agentClient(dir)
		if err != nil {
			t.Fatal(err)
		}
		a := &simAgent{id: i, url: "https://" + srv.listen, secret: strings.TrimSpace(string(secret)), client: c}
		agents[i] = a
		per := total / nAgents
		wg.Go(func() {
			for done, counter := 0, 0; done < per && actx.Err() == nil; counter++ {
				k := min(500, per-done)
				lines := make([]json.RawMessage, k)
				for j := range lines {
					lines[j] = faultLine(a.id, counter, done+j)
				}
				if a.send(actx, lines) != nil {
					return
				}
				done += k
			}
		})
	}
	s503 := func() int64 { _, _, n := agentTotals(agents); return n }
	sentNow := func() int64 { n, _, _ := agentTotals(agents); return n }

	if !waitFor(60*time.Second, func() bool { return sentNow() > int64(total)/10 }) {
		t.Fatalf("agents sent only %d events in 60s", sentNow())
	}
	// Outage 1: ClickHouse hangs.
	if err := ch.Pause(); err != nil {
		t.Fatal(err)
	}
	pausedAt := sentNow()
	if !waitFor(90*time.Second, func() bool { return s503() > 0 }) {
		t.Fatalf("no 503 within 90s of pausing ClickHouse (sent %d -> %d)\n%s", pausedAt, sentNow(), srv.logTail())
	}
	heldWhilePaused := sentNow() - pausedAt
	time.Sleep(2 * time.Second)
	if err := ch.Resume(); err != nil {
		t.Fatal(err)
	}
	// Outage 2: ClickHouse dies and comes back on the same data.
	if !waitFor(60*time.Second, func() bool { return sentNow() > int64(total)/2 }) {
		t.Fatalf("ingest did not resume after ClickHouse continued: sent %d\n%s", sentNow(), srv.logTail())
	}
	before := s503()
	ch.Kill()
	killedAt := sentNow()
	if !waitFor(90*time.Second, func() bool { return s503() > before }) {
		t.Fatalf("no 503 within 90s of killing ClickHouse\n%s", srv.logTail())
	}
	heldWhileDown := sentNow() - killedAt
	time.Sleep(2 * time.Second)
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	sent, retries, n503 := agentTotals(agents)
	var withRetryAfter int64
	for _, a := range agents {
		withRetryAfter += a.retryAfter.Load()
	}
	if sent != int64(total) {
		t.Fatalf("agents delivered %d of %d events", sent, total)
	}
	if withRetryAfter != n503 {
		t.Errorf("%d of %d 503 answers carried Retry-After", withRetryAfter, n503)
	}
	st, err := clickhouse.Open(ctx, clickhouse.Options{URL: ch.URL, Database: "vigil_fault"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rows, distinct int64
	drained := waitFor(3*time.Minute, func() bool {
		r, err := st.Query(ctx, "SELECT count(), uniqExact(event_id) FROM process_creation")
		if err != nil {
			return false
		}
		rows, _ = r.Rows[0][0].(int64)
		distinct, _ = r.Rows[0][1].(int64)
		if rows == 0 {
			rows = toInt64(r.Rows[0][0])
			distinct = toInt64(r.Rows[0][1])
		}
		return rows >= int64(total)
	})
	srv.stop()
	t.Logf("%d events; %d retries, %d answered 503 (all with Retry-After: %v); WAL accepted %d events while ClickHouse was paused and %d while it was down",
		sent, retries, n503, withRetryAfter == n503, heldWhilePaused, heldWhileDown)
	if !drained || rows != int64(total) || distinct != int64(total) {
		t.Fatalf("process_creation in ClickHouse: %d rows, %d distinct; want exactly %d\n%s", rows, distinct, total, srv.logTail())
	}
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// TestFaultCorruptWALTail: bytes of a torn write are left at the end of
// the WAL between two runs; the next start cuts exactly them, says so in
// its log, and loses no acknowledged event.
func TestFaultCorruptWALTail(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: real processes; skipped with -short")
	}
	dir := t.TempDir()
	srv := newServerProc(t, dir)
	srv.start()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const total = 20_000
	agents := runAgents(ctx, t, dir, "https://"+srv.listen, 4, total, 250)
	if sent, _, _ := agentTotals(agents); sent != total {
		t.Fatalf("sent %d of %d; answers: %s\n%s", sent, total, errAnswers(agents), srv.logTail())
	}
	srv.kill()

	// A torn write: a header promising 4,000 bytes, then 1,234 of them.
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no WAL segment after the run")
	}
	last := segs[len(segs)-1]
	torn := make([]byte, 8+1234)
	torn[0], torn[1] = 0xa0, 0x0f // little-endian 4000
	for i := 8; i < len(torn); i++ {
		torn[i] = byte(i)
	}
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	kept := fi.Size()
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()

	srv.start()
	srv.stop()
	log := srv.log()
	want := fmt.Sprintf("segment=%s kept_bytes=%d cut_bytes=%d", filepath.Base(last), kept, len(torn))
	if !strings.Contains(log, "cutting a torn or corrupt tail") || !strings.Contains(log, want) {
		t.Errorf("server log does not say what was cut (want %q):\n%s", want, srv.logTail())
	}
	if fi, err := os.Stat(last); err == nil && fi.Size() != kept {
		t.Errorf("%s: %d bytes after the restart, want %d (the torn tail cut)", last, fi.Size(), kept)
	}
	rows, distinct := countEvents(t, dir)
	if rows != total || distinct != total {
		t.Fatalf("process_creation: %d rows, %d distinct; want %d", rows, distinct, total)
	}
}

// TestFaultDiskFull: the data directory is a small tmpfs that fills up
// while agents send. The server answers with errors that say what is
// wrong (503 with a message; the log names the cause), keeps every
// acknowledged event, and recovers when the file system is made bigger.
// Needs root (mount); skipped otherwise.
func TestFaultDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: real processes; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs as a full disk")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "vigil-fault", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	srv := newServerProc(t, dir, "--wal-max-bytes", strconv.Itoa(64<<20))
	srv.start()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const total = 120_000
	done := startAgents(ctx, t, dir, "https://"+srv.listen, 4, total, 500)

	// Wait until the disk is full: the server log says so.
	full := waitFor(2*time.Minute, func() bool { return strings.Contains(srv.log(), "no space left on device") })
	if !full {
		t.Fatalf("the 8 MiB data directory never filled up:\n%s", srv.logTail())
	}
	// Keep it full for a while: the server must stay up and answer errors.
	time.Sleep(3 * time.Second)
	select {
	case <-srv.exited:
		t.Logf("the server exited on the full disk; restarting after the space returns:\n%s", srv.logTail())
	default:
	}
	if out, err := exec.Command("mount", "-o", "remount,size=1g", dir).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v %s", err, out)
	}
	select {
	case <-srv.exited:
		srv.start()
	default:
	}
	var agents []*simAgent
	select {
	case agents = <-done:
	case <-ctx.Done():
		t.Fatalf("agents did not finish after the space returned\n%s", srv.logTail())
	}
	sent, retries, n503 := agentTotals(agents)
	bodies := map[int]string{}
	for _, a := range agents {
		a.errBodies.Range(func(k, v any) bool { bodies[k.(int)] = v.(string); return true })
	}
	srv.stop()
	t.Logf("%d events; %d retries, %d answered 503; error answers seen: %v", sent, retries, n503, bodies)
	if len(bodies) == 0 {
		t.Errorf("no agent ever got an error answer while the disk was full")
	}
	for code, body := range bodies {
		if code != http.StatusServiceUnavailable && code != http.StatusInternalServerError {
			t.Errorf("answer %d on a full disk: want 503 or 500 (%s)", code, body)
		}
		if !strings.Contains(body, "error") {
			t.Errorf("answer %d has no error message: %q", code, body)
		}
	}
	if sent != total {
		t.Fatalf("sent %d of %d", sent, total)
	}
	rows, distinct := countEvents(t, dir)
	for round := 0; rows < total && walUnreleased(dir) > 0 && round < 5; round++ {
		// Not drained at the clean stop: the next start replays.
		srv.start()
		time.Sleep(5 * time.Second)
		srv.stop()
		rows, distinct = countEvents(t, dir)
	}
	if rows != total || distinct != total {
		t.Fatalf("process_creation: %d rows, %d distinct; want %d\n%s", rows, distinct, total, srv.logTail())
	}
}

// TestStoreAndStreamURLs: the --store and --stream values the fault tests
// and benchmarks pass, and the mistakes an operator makes.
func TestStoreAndStreamURLs(t *testing.T) {
	t.Setenv(clickhousePasswordEnv, "from-env")
	o, err := parseClickHouseURL("clickhouse://ch.internal/events?user=vigil&secure=1")
	if err != nil || o.URL != "https://ch.internal:8123" || o.Database != "events" || o.User != "vigil" || o.Password != "from-env" {
		t.Errorf("clickhouse URL: %+v %v", o, err)
	}
	o, err = parseClickHouseURL("clickhouse://u:p%40ss@127.0.0.1:9123/db")
	if err != nil || o.URL != "http://127.0.0.1:9123" || o.User != "u" || o.Password != "p@ss" {
		t.Errorf("clickhouse URL with user info: %+v %v", o, err)
	}
	if r := redact("clickhouse://u:secret@h:1/db?password=secret2"); strings.Contains(r, "secret") {
		t.Errorf("redact left the password: %s", r)
	}
	if _, err := openStore(context.Background(), "postgres://x", t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "want duckdb") {
		t.Errorf("unknown store: %v", err)
	}
	c, err := parseStreamURL("kafka://b1,b2:9093/vigil-events?group=g1")
	if err != nil || strings.Join(c.Brokers, ",") != "b1:9092,b2:9093" || c.Topic != "vigil-events" || c.Group != "g1" {
		t.Errorf("stream URL: %+v %v", c, err)
	}
	for _, bad := range []string{"kafka://b1:9092", "kafka:///t", "nats://b/t", "kafka://b/t/x"} {
		if _, err := parseStreamURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestServerKafkaStream: `vigil server --stream kafka://...` (against an
// in-process kfake cluster): agents' batches go WAL -> Kafka -> consumer
// group -> DuckDB, each event once, and detection still queries the store.
func TestServerKafkaStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and a Kafka cluster; skipped with -short")
	}
	const topic = "vigil-events"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	m := NewMain(ServerOptions{
		DataDir: dir, Listen: "127.0.0.1:0",
		Stream: "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + topic,
	})
	ctx := context.Background()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.producer == nil || m.consumer == nil {
		t.Fatal("--stream did not start a producer and a consumer")
	}
	const total = 20_000
	actx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	agents := runAgents(actx, t, dir, m.URL(), 4, total, 500)
	if sent, _, _ := agentTotals(agents); sent != total {
		t.Fatalf("sent %d of %d", sent, total)
	}
	var rows, distinct int64
	ok := waitFor(2*time.Minute, func() bool {
		r, err := m.store.Query(ctx, "SELECT count(*), count(DISTINCT event_id) FROM process_creation")
		if err != nil {
			return false
		}
		rows, distinct = toInt64(r.Rows[0][0]), toInt64(r.Rows[0][1])
		return rows >= total
	})
	if !ok || rows != total || distinct != total {
		t.Fatalf("process_creation: %d rows, %d distinct; want %d", rows, distinct, total)
	}
	if st := m.consumer.Stats(); st.Appended < total || st.Skipped != 0 {
		t.Errorf("consumer stats: %+v", st)
	}
}
