package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/agent"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store/duckdb"
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
	// TLSHosts are extra names and addresses for the server certificate.
	TLSHosts []string
	Logger   *slog.Logger
}

// Main is the wiring of `vigil server` and `vigil up`: it is the only place
// that knows every layer. End-to-end tests run it on 127.0.0.1:0.
type Main struct {
	opts ServerOptions
	log  *slog.Logger

	state   *state.DB
	store   *duckdb.Store
	wal     *wal.WAL
	ingest  *ingest.Ingester
	control *control.Server
	api     *web.API
	detect  *detect.Engine
	agent   *agent.Agent

	ln      net.Listener
	srv     *http.Server
	url     string
	secret  string
	profile Profile

	cancel     context.CancelFunc
	stopIngest context.CancelFunc
	ingestDone chan struct{}
	wg         sync.WaitGroup
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if m.secret, err = loadOrCreateSecret(filepath.Join(dir, "enroll_secret")); err != nil {
		return err
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, m.opts.TLSHosts...)
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	bundle, err := pki.Ensure(filepath.Join(dir, "pki"), hosts)
	if err != nil {
		return fmt.Errorf("preparing TLS: %w", err)
	}
	if m.state, err = state.Open(ctx, filepath.Join(dir, "state.db"), m.log); err != nil {
		return fmt.Errorf("opening state: %w", err)
	}
	if m.store, err = duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb"), Logger: m.log}); err != nil {
		return fmt.Errorf("opening event store: %w", err)
	}
	// Batches are acknowledged once the WAL's group commit has them; the
	// drainer moves them into the store in the background.
	if m.wal, err = wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), Logger: m.log}); err != nil {
		return fmt.Errorf("opening write-ahead log: %w", err)
	}
	var ctl *control.Server
	m.ingest = ingest.New(ingest.Options{
		Appender:   m.store,
		WAL:        m.wal,
		QueryTable: func(name string) string { return ctl.OsqueryTableOf(name) },
		Logger:     m.log,
	})
	ctl, err = control.New(control.Options{
		State:        m.state,
		Ingest:       m.ingest,
		EnrollSecret: m.secret,
		Config:       defaultConfig(m.opts.ScheduleInterval),
		Logger:       m.log,
	})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	m.control = ctl
	m.api = web.New(web.Options{State: m.state, Control: m.control, Logger: m.log})

	m.detect = detect.New(detect.Options{
		Querier:  m.store,
		Dialect:  m.store.Dialect(),
		State:    m.state,
		Interval: m.opts.DetectInterval,
		Logger:   m.log,
	})
	for _, err := range m.detect.Load(rules.FS, ".") {
		m.log.Error("built-in rule not loaded", "err", err)
	}
	if m.opts.RulesDir != "" {
		for _, err := range m.detect.Load(os.DirFS(m.opts.RulesDir), ".") {
			m.log.Error("rule not loaded", "err", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/api/v1/osquery/", m.control.Handler())
	mux.Handle("/api/", m.api.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	if m.ln, err = net.Listen("tcp", m.opts.Listen); err != nil {
		return fmt.Errorf("listening on %s: %w", m.opts.Listen, err)
	}
	m.url = "https://" + urlHost(m.ln.Addr().(*net.TCPAddr))
	m.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         bundle.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.goRun("http", func(context.Context) error {
		err := m.srv.ServeTLS(m.ln, "", "")
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

	token, err := m.adminToken(ctx)
	if err != nil {
		return err
	}
	m.profile = Profile{URL: m.url, CAFile: bundle.CAFile, Token: token}
	if err := writeProfile(dir, m.profile); err != nil {
		return err
	}

	if m.opts.WithAgent {
		m.agent, err = agent.New(agent.Options{
			ServerURL:      m.url,
			RootCAs:        bundle.CertPool(),
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

// EnrollSecret is the secret agents present to enroll.
func (m *Main) EnrollSecret() string { return m.secret }

// Close stops everything in reverse order of start.
func (m *Main) Close() error {
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

func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading enroll secret: %w", err)
	}
	var r [24]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing enroll secret: %w", err)
	}
	return s, nil
}

func urlHost(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	return net.JoinHostPort(a.IP.String(), fmt.Sprint(a.Port))
}
