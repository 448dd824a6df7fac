// Package loadgen simulates a fleet of agents against a Vigil server (or
// any server of the osquery TLS remote API): each simulated agent enrolls,
// fetches its config, sends result logs on a schedule and answers live
// queries, holding distributed/read open when long polling. It measures
// per-endpoint latency and errors. cmd/vigil wires it as
// `vigil bench agents`; it imports only the standard library, the root
// package and osquery, like an agent.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// Options configure a run. URL and EnrollSecret are required.
type Options struct {
	URL          string         // https://host:port of the server
	RootCAs      *x509.CertPool // CA to pin; nil uses the system pool
	EnrollSecret string
	Agents       int           // simulated agents; default 100
	Duration     time.Duration // how long to run after enrolling; default 30 s
	// LogInterval is how often each agent sends a result log request,
	// with LinesPerLog lines; defaults 4 s (osquery's logger_tls_period)
	// and 8 (2 lines a second per agent).
	LogInterval time.Duration
	LinesPerLog int
	// LongPoll makes agents announce the long-poll capability and hold
	// distributed/read open (as Vigil's agent); otherwise they poll every
	// ReadInterval (as osquery's distributed_interval), default 10 s.
	LongPoll     bool
	ReadInterval time.Duration
	// Prefix of host identifiers: <prefix>-<n>; default "loadgen".
	Prefix string
	// EnrollConcurrency bounds simultaneous enrollments; default 50.
	EnrollConcurrency int
	// Stop, when closed, ends the run before Duration (requests already
	// sent still complete and count).
	Stop   <-chan struct{}
	Logger *slog.Logger
}

// Stats summarise one endpoint's requests.
type Stats struct {
	Count  int           `json:"count"`
	Errors int           `json:"errors"`
	P50    time.Duration `json:"p50"`
	P99    time.Duration `json:"p99"`
	Max    time.Duration `json:"max"`
}

// Report is the outcome of a run.
type Report struct {
	Agents          int              `json:"agents"`
	Enrolled        int              `json:"enrolled"`
	EnrollTime      time.Duration    `json:"enroll_time"` // all enrollments, wall clock
	Elapsed         time.Duration    `json:"elapsed"`
	LinesSent       int64            `json:"lines_sent"`
	QueriesAnswered int64            `json:"queries_answered"`
	Endpoints       map[string]Stats `json:"endpoints"`
	FirstErrors     []string         `json:"first_errors,omitempty"`
	samples         map[string][]time.Duration
}

// LinesPerSecond is the rate result lines were accepted at.
func (r Report) LinesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.LinesSent) / r.Elapsed.Seconds()
}

// String renders the report for people.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "agents %d, enrolled %d in %v; ran %v; %d result lines (%.0f/s); %d live queries answered\n",
		r.Agents, r.Enrolled, r.EnrollTime.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond), r.LinesSent,
		r.LinesPerSecond(), r.QueriesAnswered)
	names := make([]string, 0, len(r.Endpoints))
	for n := range r.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "%-36s %8s %7s %10s %10s %10s\n", "endpoint", "requests", "errors", "p50", "p99", "max")
	for _, n := range names {
		s := r.Endpoints[n]
		fmt.Fprintf(&b, "%-36s %8d %7d %10v %10v %10v\n", n, s.Count, s.Errors, s.P50.Round(time.Microsecond),
			s.P99.Round(time.Microsecond), s.Max.Round(time.Microsecond))
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

type recorder struct {
	mu      sync.Mutex
	samples map[string][]time.Duration
	errs    map[string]int
	first   []string
}

const maxSamples = 1_000_000

// loadgenGCPercent is the simulator's GOGC while it runs (see Run).
const loadgenGCPercent = 400

func (r *recorder) record(path string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples[path]) < maxSamples {
		r.samples[path] = append(r.samples[path], d)
	}
	if err != nil {
		r.errs[path]++
		if len(r.first) < 10 {
			r.first = append(r.first, fmt.Sprintf("%s: %v", path, err))
		}
	}
}

// Run simulates the fleet until Duration has passed after enrollment or
// ctx ends, and reports. It fails only when no agent could enroll.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.URL == "" || opts.EnrollSecret == "" {
		return Report{}, errors.New("loadgen: URL and EnrollSecret are required")
	}
	if opts.Agents <= 0 {
		opts.Agents = 100
	}
	if opts.Duration <= 0 {
		opts.Duration = 30 * time.Second
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = 4 * time.Second
	}
	if opts.LinesPerLog <= 0 {
		opts.LinesPerLog = 8
	}
	if opts.ReadInterval <= 0 {
		opts.ReadInterval = 10 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "loadgen"
	}
	if opts.EnrollConcurrency <= 0 {
		opts.EnrollConcurrency = 50
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// The simulator shares the machine with the server it measures: at
	// 10,000 agents (50,000 goroutines) its collector took a quarter of
	// its CPU, time the server's live query waited for. Unless GOGC says
	// otherwise, it collects less often and uses more memory instead.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(loadgenGCPercent))
	}
	rec := &recorder{samples: map[string][]time.Duration{}, errs: map[string]int{}}
	g := &fleet{opts: opts, rec: rec, base: strings.TrimRight(opts.URL, "/")}

	// Enroll everyone first, bounded, so the run measures steady state.
	start := time.Now()
	agents := make([]*simAgent, opts.Agents)
	sem := make(chan struct{}, opts.EnrollConcurrency)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a := &simAgent{g: g, ident: fmt.Sprintf("%s-%d", opts.Prefix, i), uuid: randomHex(16), client: newClient(opts)}
			if err := a.enroll(ctx); err != nil {
				return
			}
			agents[i] = a
		}()
	}
	wg.Wait()
	report := Report{Agents: opts.Agents, EnrollTime: time.Since(start)}
	agents = slices.DeleteFunc(agents, func(a *simAgent) bool { return a == nil })
	report.Enrolled = len(agents)
	if len(agents) == 0 {
		report.finish(rec)
		return report, fmt.Errorf("loadgen: no agent could enroll: %s", strings.Join(rec.first, "; "))
	}

	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	if opts.Stop != nil {
		go func() {
			select {
			case <-opts.Stop:
				cancel()
			case <-runCtx.Done():
			}
		}()
	}
	runStart := time.Now()
	for _, a := range agents {
		// Requests already sent finish under ctx even when the run ends, so
		// what the report counts is what the server got.
		if opts.LongPoll {
			wg.Go(func() { a.longPollLoop(runCtx, ctx) })
			continue
		}
		wg.Go(func() { a.logLoop(runCtx, ctx) })
		wg.Go(func() { a.readLoop(runCtx, ctx) })
	}
	wg.Wait()
	for _, a := range agents {
		a.client.CloseIdleConnections()
	}
	report.Elapsed = time.Since(runStart)
	report.LinesSent = g.lines.Load()
	report.QueriesAnswered = g.answered.Load()
	report.finish(rec)
	return report, nil
}

func (r *Report) finish(rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r.Endpoints = map[string]Stats{}
	for path, ds := range rec.samples {
		s := slices.Clone(ds)
		slices.Sort(s)
		st := Stats{Count: len(s), Errors: rec.errs[path]}
		if len(s) > 0 {
			st.P50, st.P99, st.Max = s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], s[len(s)-1]
		}
		r.Endpoints[path] = st
	}
	r.FirstErrors = rec.first
}

type fleet struct {
	opts     Options
	rec      *recorder
	base     string
	lines    atomic.Int64
	answered atomic.Int64
}

type simAgent struct {
	g       *fleet
	client  *http.Client
	ident   string
	uuid    string
	key     string
	counter int
}

// post sends one request and decodes the answer; the error says what went
// wrong (transport, status, node_invalid).
// post sends body (encoded as JSON, or as it is if it is a []byte).
func (a *simAgent) post(ctx context.Context, path string, body, out any) error {
	b, ok := body.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, elapsed, err := a.request(ctx, path, b)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		raw, rerr := io.ReadAll(resp.Body)
		switch {
		case rerr != nil:
			err = rerr
		case resp.StatusCode != http.StatusOK:
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
		case out != nil:
			err = json.Unmarshal(raw, out)
		}
		if err == nil {
			var inv osquery.NodeInvalidResponse
			if json.Unmarshal(raw, &inv) == nil && inv.NodeInvalid {
				err = errors.New("node_invalid")
			}
		}
	}
	if ctx.Err() != nil && err != nil {
		return ctx.Err() // the run ended; not the server's fault
	}
	a.g.rec.record(path, elapsed(), err)
	return err
}

// request is a POST of body to path as an osquery agent sends it, with
// the clock of its latency (traced).
func (a *simAgent) request(ctx context.Context, path string, body []byte) (*http.Request, func() time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.g.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "osquery/5.12.1 (vigil loadgen)")
	if a.key != "" {
		req.Header.Set("Authorization", "NodeKey "+a.key)
	}
	req, elapsed := traced(req)
	return req, elapsed, nil
}

// held sends a request (a log or a distributed/write) that Vigil's server
// holds as the next read. The server sends its status once the lines or
// answers are recorded: that is the request's latency, and it completes
// under reqCtx; the hold that follows ends with the run (runCtx). It
// returns the queries the hold brought; a server that does not hold
// answers as osquery expects, with no queries.
func (a *simAgent) held(runCtx, reqCtx context.Context, path string, body []byte) (map[string]string, error) {
	ctx, cancel := context.WithCancel(reqCtx)
	defer cancel()
	req, elapsed, err := a.request(ctx, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	if runCtx.Err() != nil && err != nil {
		return nil, runCtx.Err() // the run ended; not the server's fault
	}
	a.g.rec.record(path, elapsed(), err)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	stop := context.AfterFunc(runCtx, cancel) // the hold ends with the run
	defer stop()
	var out osquery.DistributedWriteResponse
	if json.NewDecoder(resp.Body).Decode(&out) != nil || !out.VigilHeld || len(out.Queries) == 0 {
		return nil, nil // recorded; the next read asks again
	}
	return out.Queries, nil
}

// newClient gives each simulated agent its own connection, as real agents
// have: one shared transport made its mutex the bottleneck of the
// simulation rather than the server. Every agent speaks HTTP/1.1 over one
// kept-alive connection and sends its requests in turn, as osquery does
// and as Vigil's agent does when long polling (longPollLoop).
func newClient(opts Options) *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// traced returns req with a clock that starts once the request has its
// connection (or starts dialing one): time spent waiting for the agent's
// one connection, busy with a held read, is the agent's and not the
// server's, and is left out of the endpoint latencies.
func traced(req *http.Request) (*http.Request, func() time.Duration) {
	created := time.Now()
	var start, dial time.Time
	tr := &httptrace.ClientTrace{
		ConnectStart: func(string, string) {
			if dial.IsZero() {
				dial = time.Now()
			}
		},
		GotConn: func(info httptrace.GotConnInfo) {
			start = time.Now()
			if !info.Reused && !dial.IsZero() {
				start = dial
			}
		},
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), tr)), func() time.Duration {
		if start.IsZero() {
			return time.Since(created)
		}
		return time.Since(start)
	}
}

// maxHold is the longest hold a long-polling agent asks for, as Vigil's
// agent's default LongPollWait.
const maxHold = 30 * time.Second

// longPollLoop is a long-polling agent, as Vigil's agent runs its one
// connection: each log send is held as its next read until the next send
// is due, a read is held when no send is due, and a live query is answered
// with a write held as the next read (unless a send is due). Log sends
// start at a random point of the first interval, so that agents spread
// over it.
func (a *simAgent) longPollLoop(ctx, reqCtx context.Context) {
	interval := a.g.opts.LogInterval
	nextLog := time.Now().Add(time.Duration(randomUint(uint64(interval))))
	waitMS := func() int { return int(min(time.Until(nextLog), maxHold) / time.Millisecond) }
	var next map[string]string // queries a hold brought
	for ctx.Err() == nil {
		var err error
		switch {
		case next != nil:
			next, err = a.answer(ctx, reqCtx, next, max(waitMS(), 0))
		case !time.Now().Before(nextLog):
			nextLog = nextLog.Add(interval)
			if nextLog.Before(time.Now()) {
				nextLog = time.Now().Add(interval) // fell behind: no burst to catch up
			}
			next, err = a.held(ctx, reqCtx, osquery.PathLog, a.logBody(time.Now(), waitMS()))
			if err == nil {
				a.g.lines.Add(int64(a.g.opts.LinesPerLog))
			}
		default:
			var rr osquery.DistributedReadResponse
			err = a.post(ctx, osquery.PathDistributedRead, osquery.NodeRequest{NodeKey: a.key, VigilWait: max(waitMS(), 1)}, &rr)
			if len(rr.Queries) > 0 {
				next = rr.Queries
			}
		}
		if err != nil && !sleep(ctx, time.Second) {
			return
		}
	}
}

func (a *simAgent) enroll(ctx context.Context) error {
	details := map[string]map[string]string{
		"system_info":  {"hostname": a.ident, "uuid": a.uuid},
		"os_version":   {"name": "Loadgen Linux", "version": "1", "platform": "linux"},
		"osquery_info": {"version": "5.12.1"},
	}
	if a.g.opts.LongPoll {
		details["vigil"] = map[string]string{"long_poll": "true", "capability": strconv.Itoa(osquery.CapabilityVersion)}
	}
	var er osquery.EnrollResponse
	if err := a.post(ctx, osquery.PathEnroll, osquery.EnrollRequest{EnrollSecret: a.g.opts.EnrollSecret,
		HostIdentifier: a.ident, PlatformType: "9", HostDetails: details}, &er); err != nil {
		return err
	}
	if er.NodeKey == "" {
		return errors.New("enroll returned no node key")
	}
	a.key = er.NodeKey
	var cfg osquery.Config
	return a.post(ctx, osquery.PathConfig, osquery.NodeRequest{NodeKey: a.key}, &cfg)
}

func (a *simAgent) logLoop(ctx, reqCtx context.Context) {
	// Spread agents over the interval so they do not all send at once.
	if !sleep(ctx, time.Duration(randomUint(uint64(a.g.opts.LogInterval)))) {
		return
	}
	t := time.NewTicker(a.g.opts.LogInterval)
	defer t.Stop()
	for {
		if a.sendLog(reqCtx) == nil {
			a.g.lines.Add(int64(a.g.opts.LinesPerLog))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *simAgent) sendLog(ctx context.Context) error {
	return a.post(ctx, osquery.PathLog, a.logBody(time.Now(), 0), nil)
}

// logBody is a result log request of LinesPerLog process_events lines,
// encoded by hand: through encoding/json the simulation spent a sixth of
// its CPU encoding them, which real agents spend on their own machines and
// here took from the server under test. waitMS > 0 asks for it to be held
// as the next read.
func (a *simAgent) logBody(now time.Time, waitMS int) []byte {
	cal, unix := osquery.CalendarTime(now), now.Unix()
	b := make([]byte, 0, 128+300*a.g.opts.LinesPerLog)
	b = append(b, `{"node_key":`...)
	b = strconv.AppendQuote(b, a.key)
	b = append(b, `,"log_type":"result","data":[`...)
	for i := range a.g.opts.LinesPerLog {
		a.counter++
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"process_events","hostIdentifier":`...)
		b = strconv.AppendQuote(b, a.ident)
		b = append(b, `,"calendarTime":`...)
		b = strconv.AppendQuote(b, cal)
		b = append(b, `,"unixTime":`...)
		b = strconv.AppendInt(b, unix, 10)
		b = append(b, `,"epoch":0,"counter":`...)
		b = strconv.AppendInt(b, int64(a.counter), 10)
		b = append(b, `,"numerics":false,"action":"added","columns":{"cmdline":"true `...)
		b = strconv.AppendInt(b, int64(a.counter), 10)
		b = append(b, `","parent":"1","path":"/usr/bin/true","pid":"`...)
		b = strconv.AppendInt(b, int64(1000+a.counter), 10)
		b = append(b, `","time":"`...)
		b = strconv.AppendInt(b, unix, 10)
		b = append(b, `","uid":"0"}}`...)
	}
	b = append(b, ']')
	if waitMS > 0 {
		b = append(b, `,"vigil_wait_ms":`...)
		b = strconv.AppendInt(b, int64(waitMS), 10)
	}
	return append(b, '}')
}

// readLoop polls distributed/read every ReadInterval, as osquery does.
func (a *simAgent) readLoop(ctx, reqCtx context.Context) {
	// The first read comes at a random point of the interval, as log
	// sends do: a fleet's agents started at different times, not within
	// the seconds the simulation takes to enroll them all (which would
	// bring all their answers to a live query within those seconds).
	if !sleep(ctx, time.Duration(randomUint(uint64(a.g.opts.ReadInterval)))) {
		return
	}
	for ctx.Err() == nil {
		var rr osquery.DistributedReadResponse
		err := a.post(ctx, osquery.PathDistributedRead, osquery.NodeRequest{NodeKey: a.key}, &rr)
		if err == nil && len(rr.Queries) > 0 {
			a.answer(ctx, reqCtx, rr.Queries, 0)
			continue
		}
		if !sleep(ctx, a.g.opts.ReadInterval) {
			return
		}
	}
}

// answer writes the answers to queries. As Vigil's agent, a long-polling
// agent (wait > 0) has its write held as its next read (held), and gets
// back the queries that read brought; a plain one's write finishes under
// reqCtx, which outlives the run.
func (a *simAgent) answer(ctx, reqCtx context.Context, queries map[string]string, wait int) (next map[string]string, err error) {
	wr := osquery.DistributedWriteRequest{NodeKey: a.key, Queries: map[string][]map[string]string{},
		Statuses: map[string]osquery.Int{}, VigilWait: wait}
	for id := range queries {
		wr.Queries[id] = []map[string]string{{"host": a.ident, "answer": "42"}}
		wr.Statuses[id] = 0
	}
	if wait > 0 {
		var b []byte
		if b, err = json.Marshal(wr); err != nil {
			return nil, err
		}
		next, err = a.held(ctx, reqCtx, osquery.PathDistributedWrite, b)
	} else {
		err = a.post(reqCtx, osquery.PathDistributedWrite, wr, nil)
	}
	if err == nil {
		a.g.answered.Add(int64(len(queries)))
	}
	return next, err
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUint(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	var b [8]byte
	rand.Read(b[:])
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v % n
}
