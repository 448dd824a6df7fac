package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/metrics"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/stream/kafka"
	"github.com/vigilhq/vigil/web"
)

// The control state is what the detection engine keeps its watermarks and
// alerts in.
var _ detect.State = (*state.DB)(nil)

// ServerOptions configure a Main.
type ServerOptions struct {
	DataDir   string // everything lives here: state, events, WAL, PKI, profile
	Listen    string // host:port for agents and people; port 0 picks one
	WithAgent bool   // run an agent for this host in the same process (`vigil up`)
	// AgentEvents starts the in-process agent's real-time event sources
	// (needs root; without it the agent warns and goes on).
	AgentEvents bool
	// RulesDir holds extra Sigma rules loaded beside the built-in ones.
	RulesDir       string
	DetectInterval time.Duration
	// ScheduleInterval is the interval of the default event queries.
	ScheduleInterval time.Duration
	// TLSHosts are extra names and addresses for the server certificate;
	// the first is the name printed for other hosts to enroll with.
	TLSHosts []string
	// TLSCertFile and TLSKeyFile are the operator's server certificate
	// (PEM, intermediates after it) and private key, used instead of the
	// private CA in DATA/pki; both or neither. TLSCAFile is the PEM that
	// agents and the CLI pin (the CA that signed TLSCertFile); empty means
	// TLSCertFile itself (a self-signed certificate).
	TLSCertFile, TLSKeyFile, TLSCAFile string
	Logger                             *slog.Logger
	// Store names the event store (see openStore): "" or "duckdb" is
	// DATA/events.duckdb; clickhouse://host:8123/db uses ClickHouse.
	Store string
	// Stream, when set (kafka://broker:9092/topic), puts Kafka between the
	// WAL and the store: the drainer produces, a consumer group appends.
	Stream string
	// NoConsume runs only the producing half of Stream (stateless ingest
	// replicas; another replica consumes into the store).
	NoConsume bool
	// WALMaxBytes bounds the write-ahead log; beyond it /log answers 503
	// with Retry-After (default wal.DefaultMaxBytes).
	WALMaxBytes int64
	// MetricsListen, when set, serves Prometheus metrics at /metrics on
	// this address over plain HTTP without authentication: bind it to
	// loopback or a scrape-only network (see dashboards/README.md).
	MetricsListen string
	// State is where hosts, keys, live queries, people and alerts live:
	// "" for DATA/state.db (SQLite), or a postgres:// URL shared by
	// replicas (the password from the URL or PGPASSWORD).
	State string
	// QueryTimeout is how long a live query waits for its hosts
	// (default control.DefaultQueryTimeout).
	QueryTimeout time.Duration
	// LiveQueryPriority is control.Options.LiveQueryPriority; 0 turns it
	// off here (the flag's default is control.DefaultLiveQueryPriority).
	LiveQueryPriority time.Duration
	// Pprof adds Go's profiler (/debug/pprof/) to the metrics listener,
	// for finding where a server's CPU and memory go.
	Pprof bool
	// OutputsFile is the YAML file of alert outputs (detect/output).
	OutputsFile string
	// DedupeWindow folds a match into an open alert of the same rule,
	// host and group key created less than this long ago; 0 means
	// DefaultDedupeWindow, negative opens one alert per match.
	DedupeWindow time.Duration
}

// Main is the wiring of `vigil server` and `vigil up`: it is the only place
// that knows every layer. End-to-end tests run it on 127.0.0.1:0.
type Main struct {
	opts ServerOptions
	log  *slog.Logger

	state *state.DB
	store eventStore
	wal   *wal.WAL

	producer   *kafka.Producer
	consumer   *kafka.Consumer
	ingest     *ingest.Ingester
	control    *control.Server
	api        *web.API
	detect     *detect.Engine
	agent      *agent.Agent
	metrics    *metrics.Metrics
	outputs    *output.Dispatcher
	metricsURL string

	ln      net.Listener
	tlsLn   *handshakeListener // serves m.srv; control rejoins parked connections to it
	srv     *http.Server
	url     string
	secret  string
	profile Profile
	enroll  Enrollment

	cancel     context.CancelFunc
	stopIngest context.CancelFunc
	ingestDone chan struct{}
	wg         sync.WaitGroup
	tablesOnce sync.Once
	tables     []web.TableSchema
	rulesMu    sync.Mutex
	closeOnce  sync.Once
	closeErr   error
	errs       chan error
}

// NewMain returns a Main with defaults filled in.
func NewMain(opts ServerOptions) *Main {
	if opts.DataDir == "" {
		opts.DataDir = defaultDataDir()
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:8443"
	}
	if opts.DetectInterval <= 0 {
		opts.DetectInterval = 2 * time.Second
	}
	if opts.ScheduleInterval <= 0 {
		opts.ScheduleInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Main{opts: opts, log: opts.Logger, errs: make(chan error, 8)}
}

// Run opens every layer and starts serving; it returns once the server
// listens. Errors of background components arrive on Errors.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	dir := m.opts.DataDir
	if err := m.checkTLSOptions(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if m.secret, err = loadOrCreateSecret(filepath.Join(dir, "enroll_secret")); err != nil {
		return err
	}
	bundle, err := m.loadTLS(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}
	statePath := filepath.Join(dir, "state.db")
	if m.opts.State != "" {
		statePath = m.opts.State
	}
	if m.state, err = state.Open(ctx, statePath, m.log); err != nil {
		return fmt.Errorf("opening state: %w", err)
	}
	if m.store, err = openStore(ctx, m.opts.Store, dir, m.log); err != nil {
		return fmt.Errorf("opening event store: %w", err)
	}
	// Batches are acknowledged once the WAL's group commit has them; the
	// drainer moves them into the store in the background, or into Kafka
	// with --stream (a consumer group then appends them to the store).
	if m.wal, err = wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), MaxBytes: m.opts.WALMaxBytes, Logger: m.log}); err != nil {
		return fmt.Errorf("opening write-ahead log: %w", err)
	}
	var sink store.Appender = m.store
	if m.opts.Stream != "" {
		cfg, err := parseStreamURL(m.opts.Stream)
		if err != nil {
			return err
		}
		if m.producer, m.consumer, err = openStream(cfg, m.store, !m.opts.NoConsume, m.log); err != nil {
			return fmt.Errorf("connecting to Kafka: %w", err)
		}
		sink = m.producer
	}
	var ctl *control.Server
	m.ingest = ingest.New(ingest.Options{
		Appender:   sink,
		WAL:        m.wal,
		QueryTable: func(name string) string { return ctl.OsqueryTableOf(name) },
		Yield:      func() <-chan struct{} { return ctl.Yield() }, // drained only after ctl is set
		Logger:     m.log,
	})
	ctl, err = control.New(control.Options{
		State:             m.state,
		Ingest:            m.ingest,
		EnrollSecret:      m.secret,
		Config:            defaultConfig(m.opts.ScheduleInterval),
		QueryTimeout:      m.opts.QueryTimeout,
		LiveQueryPriority: cmp.Or(m.opts.LiveQueryPriority, -1),
		Logger:            m.log,
		// Holds start only once the server serves, after m.tlsLn is set.
		Rejoin: func(c net.Conn) bool { return m.tlsLn.rejoin(c) },
	})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	m.control = ctl
	// Answers journaled during a live query are folded into the state
	// after it, as logs are drained and detection runs.
	m.state.SetYield(ctl.Yield)
	// Outputs and metrics first: the API serves the outputs' test sends
	// and dead-letter redelivery.
	if err := m.openObservability(); err != nil {
		return err
	}
	m.api = web.New(web.Options{State: m.state, Control: m.control, Logger: m.log,
		// The console's sources (console.go). m.detect is set below,
		// before the server starts answering.
		Events: m.store, EventsDialect: m.store.Dialect(),
		Tables:         m.tableSchemas,
		Rules:          func() []vigil.Rule { return m.detect.Rules() },
		RuleSource:     m.ruleSource,
		SetRuleEnabled: m.setRuleEnabled,
		Outputs:        m.apiOutputs(),
	})

	m.detect = detect.New(detect.Options{
		Querier:  m.store,
		Dialect:  m.store.Dialect(),
		State:    m.state,
		Interval: m.opts.DetectInterval,
		Logger:   m.log,
		// A live query's answers come first (control's priority window).
		Yield: m.control.Yield,
		// Alert lifecycle, outputs and metrics (openObservability).
		DedupeWindow: m.dedupeWindow(),
		Notifier:     m.notifier(),
		Observer:     m.metrics,
	})
	for _, err := range m.detect.Load(rules.FS, ".") {
		m.log.Error("built-in rule not loaded", "err", err)
	}
	if m.opts.RulesDir != "" {
		for _, err := range m.detect.Load(os.DirFS(m.opts.RulesDir), ".") {
			m.log.Error("rule not loaded", "err", err)
		}
	}
	if err := m.applyDisabledRules(); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/api/v1/osquery/", m.control.Handler())
	mux.Handle("/api/", m.api.Handler())
	mux.Handle("/", m.api.Handler()) // the console
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	if m.ln, err = net.Listen("tcp", m.opts.Listen); err != nil {
		return fmt.Errorf("listening on %s: %w", m.opts.Listen, err)
	}
	addr := m.ln.Addr().(*net.TCPAddr)
	m.url = "https://" + urlHost(addr)
	hostname, _ := os.Hostname()
	m.enroll = enrollment(addr, m.opts.TLSHosts, hostname, bundle)
	// This machine's agent and CLI use the loopback URL; when the
	// certificate does not cover that address they verify it under a
	// name it does cover.
	serverName := m.localServerName(addr, hostname, bundle)
	m.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         serverTLSConfig(bundle.TLSConfig()),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
		HTTP2:             http2Config(),
	}
	tlsLn := newHandshakeListener(m.ln, m.srv.TLSConfig, handshakeTimeout(m.srv), m.log)
	m.tlsLn = tlsLn
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.goRun("http", func(context.Context) error {
		err := m.srv.Serve(tlsLn)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}, runCtx)
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	m.stopIngest = stopIngest
	m.ingestDone = make(chan struct{})
	go func() {
		defer close(m.ingestDone)
		if err := m.ingest.Run(ingestCtx); err != nil {
			m.log.Error("ingest drainer stopped", "err", err)
		}
	}()
	m.goRun("detect", m.detect.Run, runCtx)
	if err := m.startObservability(runCtx); err != nil {
		return err
	}
	if m.consumer != nil {
		m.goRun("kafka-consumer", m.consumer.Run, runCtx)
	}

	token, err := m.adminToken(ctx)
	if err != nil {
		return err
	}
	caFile, err := filepath.Abs(bundle.CAFile)
	if err != nil {
		return fmt.Errorf("locating CA file: %w", err)
	}
	m.profile = Profile{URL: m.url, CAFile: caFile, ServerName: serverName, Token: token}
	if err := writeProfile(dir, m.profile); err != nil {
		return err
	}

	if m.opts.WithAgent {
		var hc *http.Client
		if serverName != "" {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: bundle.CertPool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
			hc = &http.Client{Transport: tr}
		}
		m.agent, err = agent.New(agent.Options{
			ServerURL:      m.url,
			RootCAs:        bundle.CertPool(),
			HTTPClient:     hc,
			EnrollSecret:   m.secret,
			HostIdentifier: "hostname",
			DataDir:        filepath.Join(dir, "agent"),
			LongPoll:       true,
			ConfigRefresh:  time.Minute,
			Events:         m.opts.AgentEvents,
			Logger:         m.log,
		})
		if err != nil {
			return fmt.Errorf("starting local agent: %w", err)
		}
		m.goRun("agent", m.agent.Run, runCtx)
	}
	return nil
}

func (m *Main) goRun(name string, fn func(context.Context) error, ctx context.Context) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("component stopped", "component", name, "err", err)
			select {
			case m.errs <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// Errors delivers errors of components that stopped on their own.
func (m *Main) Errors() <-chan error { return m.errs }

// URL is where agents and people reach the server.
func (m *Main) URL() string { return m.url }

// Profile is the CLI profile written into the data directory.
func (m *Main) Profile() Profile { return m.profile }

// Enrollment says how other hosts reach the server.
func (m *Main) Enrollment() Enrollment { return m.enroll }

// EnrollSecret is the secret agents present to enroll.
func (m *Main) EnrollSecret() string { return m.secret }

// Close stops everything in reverse order of start. It is safe to call more
// than once; later calls return the first call's result.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	if m.cancel != nil {
		m.cancel()
	}
	var errs []error
	// Control first: it releases long-polling agents (else Shutdown waits
	// for them), flushes check-ins and stops live-query timers while state
	// is still open.
	if m.control != nil {
		errs = append(errs, m.control.Close())
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.srv.Shutdown(ctx); err != nil {
			m.srv.Close()
		}
		cancel()
	} else if m.ln != nil {
		m.ln.Close()
	}
	m.wg.Wait()
	// No new batches arrive now: let the drainer move what the WAL holds
	// into the store (what it cannot is replayed at the next start).
	if m.stopIngest != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.ingest.WaitDrained(ctx); err != nil {
			m.log.Warn("write-ahead log not drained at shutdown; it is replayed at the next start", "err", err)
		}
		cancel()
		m.stopIngest()
		<-m.ingestDone
	}
	if m.consumer != nil {
		errs = append(errs, m.consumer.Close())
	}
	if m.producer != nil {
		errs = append(errs, m.producer.Close())
	}
	if m.wal != nil {
		errs = append(errs, m.wal.Close())
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.state != nil {
		errs = append(errs, m.state.Close())
	}
	return errors.Join(errs...)
}

// adminToken returns the admin token of the data directory's profile,
// creating one on first start.
func (m *Main) adminToken(ctx context.Context) (string, error) {
	if p, err := readProfile(m.opts.DataDir); err == nil && p.Token != "" {
		if ok, err := m.state.TokenValid(ctx, p.Token); err == nil && ok {
			return p.Token, nil
		}
	}
	tok, err := m.state.CreateToken(ctx, "vigil-up-admin", "admin")
	if err != nil {
		return "", fmt.Errorf("creating admin token: %w", err)
	}
	return tok, nil
}

// DefaultDedupeWindow is ServerOptions.DedupeWindow's default.
const DefaultDedupeWindow = 10 * time.Minute

func (m *Main) dedupeWindow() time.Duration {
	switch w := m.opts.DedupeWindow; {
	case w == 0:
		return DefaultDedupeWindow
	case w < 0:
		return 0
	default:
		return w
	}
}

// notifier is the outputs dispatcher, or nil (an untyped nil: a nil
// *Dispatcher in the interface would be called).
func (m *Main) notifier() detect.Notifier {
	if m.outputs == nil {
		return nil
	}
	return m.outputs
}

// apiOutputs is the outputs dispatcher for the API, or nil (untyped, as
// for notifier).
func (m *Main) apiOutputs() web.Outputs {
	if m.outputs == nil {
		return nil
	}
	return m.outputs
}

// openObservability loads the outputs file and builds the metrics
// registry; the layers it reads are looked up at scrape time.
func (m *Main) openObservability() error {
	if m.opts.OutputsFile != "" {
		cfg, err := output.LoadConfig(m.opts.OutputsFile)
		if err != nil {
			return err
		}
		opts, err := cfg.Build()
		if err != nil {
			return fmt.Errorf("outputs file %s: %w", m.opts.OutputsFile, err)
		}
		opts.DeadLetters, opts.Logger = m.state, m.log
		if m.outputs, err = output.New(opts); err != nil {
			return fmt.Errorf("outputs file %s: %w", m.opts.OutputsFile, err)
		}
	}
	mo := metrics.Options{
		Ingest:  m.ingest.Stats,
		Control: m.control.Stats,
		Rules:   func() []detect.RuleStats { return m.detect.Stats() },
		Lag:     func() []detect.TableLag { return m.detect.Lag() },
		Agents: func(ctx context.Context) (online, total int, err error) {
			return m.state.CountHosts(ctx, time.Now().Add(-control.DefaultOfflineAfter))
		},
		// The agents' reported event losses, read by the API from their
		// status lines in the store (m.api exists before any scrape).
		AgentDrops: func(ctx context.Context) (map[string]float64, error) { return m.api.AgentDrops(ctx) },
	}
	if st, ok := m.store.(interface {
		Stats(context.Context) (store.Stats, error)
	}); ok {
		mo.Store = st.Stats
	}
	if m.outputs != nil {
		mo.Outputs = m.outputs.Stats
	}
	m.metrics = metrics.New(mo)
	return nil
}

// startObservability runs the outputs and the metrics listener until ctx
// ends (Close cancels it).
func (m *Main) startObservability(ctx context.Context) error {
	if m.outputs != nil {
		m.goRun("outputs", m.outputs.Run, ctx)
	}
	if m.opts.MetricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", m.opts.MetricsListen)
	if err != nil {
		return fmt.Errorf("listening for metrics on %s: %w", m.opts.MetricsListen, err)
	}
	m.metricsURL = "http://" + urlHost(ln.Addr().(*net.TCPAddr)) + "/metrics"
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.metrics.Handler())
	if m.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.goRun("metrics", func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, ctx)
	return nil
}

// MetricsURL is where /metrics is served ("" without MetricsListen).
func (m *Main) MetricsURL() string { return m.metricsURL }

// Outputs is the alert outputs dispatcher (nil without an outputs file),
// for the API's test-send and dead-letter endpoints.
func (m *Main) Outputs() *output.Dispatcher { return m.outputs }
