// Package agent is the endpoint agent's runtime: it enrolls with a server
// speaking the osquery TLS remote API (or reads a config file), runs the
// query schedule with osquery's differential results, spools result and
// status lines on disk until the server acknowledges them, answers
// distributed (live) queries and runs the real-time event sources.
//
// cmd/vigil-agent and the server's in-process agent (vigil up) use it. It
// imports only agent/..., osquery and the root package: never a server
// package and never cgo.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent/event"
	"github.com/vigilhq/vigil/agent/spool"
	"github.com/vigilhq/vigil/agent/table"
)

// osquery's documented defaults (cli-flags.md).
const (
	DefaultConfigRefresh       = 0 // fetch once at start
	DefaultLoggerTLSPeriod     = 3 * time.Second
	DefaultDistributedInterval = 60 * time.Second
	DefaultLoggerTLSMaxLines   = 1024
	DefaultLoggerTLSMaxLinesz  = 1 << 20
	// DefaultDistributedMaxResultBytes bounds one distributed/write body
	// (all its results, as JSON): the server refuses bodies over 8 MiB, and
	// the bound leaves room for the request's envelope.
	DefaultDistributedMaxResultBytes = 8<<20 - 64<<10
	DefaultLoggerBackoffMax          = 3600 * time.Second
	// DefaultLongPollWait is how long the agent asks the server to hold
	// distributed/read open when LongPoll is on.
	DefaultLongPollWait = 25 * time.Second
)

// Options configure an Agent. Zero values take osquery's defaults.
type Options struct {
	// ServerURL is https://host:port (no path); "" runs without a server:
	// config from ConfigPath, results to the filesystem logger.
	ServerURL string
	// RootCAs pins the server's CA; nil uses the system roots.
	RootCAs *x509.CertPool
	// EnrollSecret is sent once at enrollment.
	EnrollSecret string
	// HostIdentifier is "hostname" (default) or "uuid", as osquery's
	// --host_identifier. The uuid is the DMI one, else derived from
	// /etc/machine-id, else generated once and kept in DataDir/host_uuid.
	HostIdentifier string
	// DataDir holds the node key, the spools and the differential state.
	DataDir string
	// ConfigPath is an osquery JSON config used when ServerURL is "".
	ConfigPath string
	// LoggerPath is where the filesystem logger writes when ServerURL is ""
	// (osqueryd.results.log, osqueryd.snapshots.log, osqueryd.status.log);
	// "" means DataDir/log.
	LoggerPath string
	// LoggerRotate rotates those files, as osquery's --logger_rotate: one
	// over LoggerRotateSize bytes (default 25 MiB) becomes NAME.1 (NAME.1
	// becomes NAME.2, ...) and at most LoggerRotateMaxFiles (default 25)
	// rotated files are kept. Off by default, as in osquery.
	LoggerRotate         bool
	LoggerRotateSize     int64
	LoggerRotateMaxFiles int
	// ConfigRefresh re-fetches the config; 0 fetches it once (osquery's
	// --config_refresh=0).
	ConfigRefresh time.Duration
	// LoggerTLSPeriod is how often spooled lines are sent (3 s).
	LoggerTLSPeriod time.Duration
	// DistributedInterval is how often distributed/read is polled (60 s).
	DistributedInterval time.Duration
	// LongPoll announces Vigil capability 1 and asks the server to hold
	// distributed/read open (LongPollWait) so live queries start at once.
	LongPoll     bool
	LongPollWait time.Duration
	// Root is the filesystem root the tables read ("" = "/").
	Root string
	// Logger receives the agent's logs; its WARN and ERROR records are also
	// sent to the server as status lines. nil discards.
	Logger *slog.Logger
	// HTTPClient replaces the agent's client (tests); its transport must
	// trust the server.
	HTTPClient *http.Client
	// Events starts the real-time event sources (needs root).
	Events bool
	// EventBuffer, if set, is the buffer event tables read (tests and
	// embedders feed it); otherwise one is created with EventsMax and
	// EventsExpiry. The config options events_max and events_expiry
	// override the buffer's limits at runtime (Buffer.SetLimits).
	EventBuffer  *event.Buffer
	EventsMax    int
	EventsExpiry time.Duration
	// BufferedLogMax bounds each spool (osquery's buffered_log_max): 0 means
	// spool.DefaultMaxRecords, negative unbounded (the CLI and the config map
	// osquery's 0, unlimited, to negative).
	BufferedLogMax int
	// WatchdogLevel -1 disables the watchdog, 1 is osquery's "restrictive"
	// level (osquery's --watchdog_level); WatchdogMemoryLimit (MB, default
	// 200), WatchdogUtilizationLimit (% CPU, default 10) and
	// WatchdogLatencyLimit (seconds over the CPU limit, default 12)
	// override its limits. The config options of the same names override
	// these at runtime.
	WatchdogLevel            int
	WatchdogMemoryLimit      int
	WatchdogUtilizationLimit int
	WatchdogLatencyLimit     int
	// LoggerTLSMaxLinesize drops result lines longer than this, counted
	// (osquery's logger_tls_max_linesize, default 1 MiB); the config option
	// of that name overrides it.
	LoggerTLSMaxLinesize int
	// DistributedMaxResultBytes bounds the results of one distributed/write
	// (default DefaultDistributedMaxResultBytes): a query whose result
	// would go over it is answered with an error status and message. The
	// config option distributed_max_result_bytes overrides it.
	DistributedMaxResultBytes int
	// EventStatsInterval is how often the loss counters (event sources,
	// event buffers, loggers: what vigil_event_drops shows) are sent as a
	// status line (default 5 min).
	EventStatsInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// The event buffer is what the event tables read.
var _ table.EventSource = (*event.Buffer)(nil)

// Agent is one running agent.
type Agent struct {
	opts Options
	// rotateFailing holds the log files whose last rotation failed, so a
	// failure is warned about once, and again only after a rotation worked.
	rotateFailing sync.Map
	// heldNext holds the queries a held log send or distributed/write
	// brought back: the next round answers them without reading. Only
	// longPollLoop uses it (and what it calls).
	heldNext map[string]string
	log      *slog.Logger // component=agent; tees WARN/ERROR to the status spool
	teeLog   *slog.Logger // the same without a component, for sub-components
	baseLog  *slog.Logger // never tees (used by components that hold locks)
	engine   *table.Engine
	events   *event.Buffer
	results  *spool.Spool
	status   *spool.Spool
	client   *uplink // nil without a server
	sched    *scheduler

	hostID     string
	hostUUID   string
	instanceID string
	started    time.Time

	mu         sync.Mutex
	config     *agentConfig
	configHash string
	// rejectedHash is the hash of the last config that failed to parse.
	rejectedHash string
	evManager    *event.Manager
	runOnce      sync.Once

	// evBaseMax and evBaseExp are the event buffer's limits at start
	// (applyEventLimits).
	evBaseMax int
	evBaseExp time.Duration
	// sourceStats, if set, replaces EventStats as the source of the event
	// sources' counters in eventStatRows (tests: loss counters without a
	// kernel that loses events). Set before Run.
	sourceStats func() []event.Stats

	lossCounters
}

// New prepares an agent: data directory, spools, table engine. It does not
// contact the server; Run does.
func New(opts Options) (*Agent, error) {
	if opts.DataDir == "" {
		return nil, errors.New("agent: DataDir is required")
	}
	if opts.ServerURL == "" && opts.ConfigPath == "" {
		return nil, errors.New("agent: need a server URL or a config path")
	}
	if opts.ServerURL != "" {
		if !strings.HasPrefix(opts.ServerURL, "https://") {
			return nil, fmt.Errorf("agent: server URL %q must start with https://", opts.ServerURL)
		}
		opts.ServerURL = strings.TrimRight(opts.ServerURL, "/")
	}
	switch opts.HostIdentifier {
	case "":
		opts.HostIdentifier = "hostname"
	case "hostname", "uuid":
	default:
		return nil, fmt.Errorf("agent: host identifier %q: want hostname or uuid", opts.HostIdentifier)
	}
	if opts.LoggerTLSPeriod <= 0 {
		opts.LoggerTLSPeriod = DefaultLoggerTLSPeriod
	}
	if opts.DistributedInterval <= 0 {
		opts.DistributedInterval = DefaultDistributedInterval
	}
	if opts.LongPollWait <= 0 {
		opts.LongPollWait = DefaultLongPollWait
	}
	if opts.LoggerPath == "" {
		opts.LoggerPath = filepath.Join(opts.DataDir, "log")
	}
	if opts.LoggerRotateSize <= 0 {
		opts.LoggerRotateSize = DefaultLoggerRotateSize
	}
	if opts.LoggerRotateMaxFiles <= 0 {
		opts.LoggerRotateMaxFiles = DefaultLoggerRotateMaxFiles
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: create data dir: %w", err)
	}
	a := &Agent{opts: opts, baseLog: opts.Logger.With("component", "agent"), started: opts.Now()}
	a.teeLog = slog.New(&statusHandler{inner: opts.Logger.Handler(), a: a})
	a.log = a.teeLog.With("component", "agent")

	var err error
	spoolLog := opts.Logger.With("component", "spool")
	a.results, err = spool.Open(spool.Options{Dir: filepath.Join(opts.DataDir, "spool", "result"), MaxRecords: opts.BufferedLogMax, Logger: spoolLog})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.status, err = spool.Open(spool.Options{Dir: filepath.Join(opts.DataDir, "spool", "status"), MaxRecords: opts.BufferedLogMax, Logger: spoolLog})
	if err != nil {
		a.results.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.events = opts.EventBuffer
	if a.events == nil {
		a.events = event.NewBuffer(event.BufferOptions{Max: opts.EventsMax, Expiry: opts.EventsExpiry, Now: opts.Now})
	}
	// What a config without events_max / events_expiry restores.
	a.evBaseMax, a.evBaseExp = a.events.Limits()
	a.instanceID, err = loadOrCreateID(filepath.Join(opts.DataDir, "instance_id"))
	if err != nil {
		a.closeSpools()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.sched = newScheduler(a)
	a.engine, err = table.Open(context.Background(), table.Options{
		Root: opts.Root, Logger: opts.Logger, Events: a.events, Info: a.info,
		EventStats: a.eventStatRows,
	})
	if err != nil {
		a.closeSpools()
		return nil, fmt.Errorf("agent: %w", err)
	}
	// Always present: the config's watchdog_level may turn it on or off at
	// runtime. Created after the engine so that its memory baseline
	// includes it.
	a.sched.wd = newWatchdog(a)
	a.hostUUID, err = hostUUID(a.engine, opts.Root, opts.DataDir)
	if err != nil {
		a.close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.hostID = a.hostIdentifier()
	if opts.ServerURL != "" {
		a.client = newUplink(a)
	}
	return a, nil
}

// Engine returns the agent's table engine (for local queries).
func (a *Agent) Engine() *table.Engine { return a.engine }

// Events returns the buffer the event tables read.
func (a *Agent) Events() *event.Buffer { return a.events }

// EventStats returns the counters of the event sources (nil before Run or
// without Options.Events).
func (a *Agent) EventStats() []event.Stats {
	a.mu.Lock()
	m := a.evManager
	a.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.Stats()
}

// HostIdentifier is the identifier the agent reports.
func (a *Agent) HostIdentifier() string { return a.hostID }

// Run runs the agent until ctx is done, then stops every component, restores
// what the event sources changed and closes the agent. It returns nil on a
// clean shutdown. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	ran := false
	a.runOnce.Do(func() { ran = true })
	if !ran {
		return errors.New("agent: Run called twice, or after Close")
	}
	defer a.close()
	stopEvents := func() {}
	if a.opts.Events {
		m := event.Start(ctx, event.Options{Sink: a.events, Logger: a.teeLog, StateDir: filepath.Join(a.opts.DataDir, "events")})
		a.mu.Lock()
		a.evManager = m
		a.mu.Unlock()
		var once sync.Once
		stopEvents = func() {
			once.Do(func() {
				if err := m.Close(); err != nil {
					a.baseLog.Warn("stopping event sources", "err", err)
				}
			})
		}
		defer stopEvents()
	}
	a.log.Info("agent starting", "version", vigil.Version, "host_identifier", a.hostID, "server", a.opts.ServerURL)
	a.reportUncleanStop()

	if a.client != nil {
		if err := a.client.ensureEnrolled(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	if err := a.loadConfig(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("no config yet; retrying", "err", err)
	}

	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(a.configLoop)
	run(a.sched.run)
	run(a.sched.wd.loop)
	// Always: the counters include the loggers' (oversized lines, spool
	// overflow), not only the event sources'.
	run(a.eventStatsLoop)
	switch {
	case a.client != nil && a.opts.LongPoll:
		run(a.longPollLoop)
	case a.client != nil:
		run(a.shipLoop)
		run(a.distributedLoop)
	default:
		run(a.fileLoggerLoop)
	}
	<-ctx.Done()
	wg.Wait()
	// Clean stop: stop the sources so that every row they read is in the
	// buffer, log the buffered rows with a last run of the event queries
	// (eventflush.go), then make one last attempt to hand over what is
	// spooled. Each step is bounded in time.
	stopEvents()
	evCtx, evCancel := context.WithTimeout(context.Background(), 10*time.Second)
	a.sched.flushEvents(evCtx)
	evCancel()
	a.finishEvents()
	flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a.client != nil {
		a.shipOnce(flushCtx, time.Time{})
	} else {
		a.writeFiles()
	}
	a.log.Info("agent stopped")
	return nil
}

// Close releases an agent whose Run was never called (Run closes the agent
// itself when it returns). It is safe to call more than once.
func (a *Agent) Close() error {
	a.runOnce.Do(a.close)
	return nil
}

func (a *Agent) close() {
	if err := a.engine.Close(); err != nil {
		a.baseLog.Warn("closing table engine", "err", err)
	}
	a.closeSpools()
}

func (a *Agent) closeSpools() {
	if err := a.results.Close(); err != nil {
		a.baseLog.Warn("closing result spool", "err", err)
	}
	if err := a.status.Close(); err != nil {
		a.baseLog.Warn("closing status spool", "err", err)
	}
}

// info describes the agent for osquery_info and osquery_schedule.
func (a *Agent) info() table.AgentInfo {
	a.mu.Lock()
	hash := a.configHash
	valid := a.config != nil
	a.mu.Unlock()
	return table.AgentInfo{
		Version:       vigil.Version,
		ConfigHash:    hash,
		Extensions:    "inactive",
		BuildPlatform: buildPlatform(),
		UUID:          a.hostUUID,
		InstanceID:    a.instanceID,
		PID:           os.Getpid(),
		StartTime:     a.started.Unix(),
		Watcher:       -1,
		ConfigValid:   valid,
		Schedule:      a.sched.info(),
	}
}
