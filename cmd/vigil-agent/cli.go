package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent"
	"github.com/vigilhq/vigil/agent/table"
)

// Main is the vigil-agent program: ParseFlags, Run, Close. Tests run the
// real wiring through it.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	cmd    string
	args   []string
	format string // "table", "json", "csv", "line"
	root   string

	// run flags, named as osquery's.
	tlsHostname          string
	tlsServerCerts       string
	enrollSecretPath     string
	hostIdentifier       string
	configPath           string
	configRefresh        int
	loggerTLSPeriod      int
	distributedInterval  int
	databasePath         string
	disableEvents        bool
	loggerPath           string
	loggerRotate         bool
	loggerRotateSize     int64
	loggerRotateMaxFiles int
	longPoll             bool
	verbose              bool
	jsonLogs             bool
	watchdogLevel        int
	watchdogMemory       int
	watchdogCPU          int
	watchdogLatency      int
	eventsMax            int
	eventsExpiry         int
	bufferedLogMax       int
	maxLinesize          int
	maxResultBytes       int

	engine *table.Engine
	agent  *agent.Agent
}

// NewMain returns a Main writing to the process's standard streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

const usage = `usage:
  vigil-agent [run] [flags]              run the agent (osquery-named flags)
  vigil-agent query [--json|--csv] SQL   run one query and print the result
  vigil-agent tables [--json]            list tables with their columns
  vigil-agent shell                      interactive SQL shell
  vigil-agent version

run flags:
`

// ParseFlags parses the command line: a subcommand (default run) and its
// flags.
func (m *Main) ParseFlags(args []string) error {
	m.cmd = "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		m.cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("vigil-agent "+m.cmd, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.root, "root", "", "filesystem root the tables read (testing and containers)")
	switch m.cmd {
	case "query", "shell":
		jsonOut := fs.Bool("json", false, "print results as a JSON array of objects")
		csvOut := fs.Bool("csv", false, "print results as CSV with a header")
		line := fs.Bool("line", false, "print one column = value per line")
		if err := fs.Parse(args); err != nil {
			return err
		}
		m.format = "table"
		switch {
		case *jsonOut:
			m.format = "json"
		case *csvOut:
			m.format = "csv"
		case *line:
			m.format = "line"
		}
		m.args = fs.Args()
		if m.cmd == "query" && len(m.args) == 0 {
			return errors.New(`query: give the SQL to run, e.g. vigil-agent query "SELECT * FROM osquery_info"`)
		}
		return nil
	case "tables":
		jsonOut := fs.Bool("json", false, "print as JSON")
		if err := fs.Parse(args); err != nil {
			return err
		}
		m.format = "table"
		if *jsonOut {
			m.format = "json"
		}
		m.args = fs.Args()
		return nil
	case "version":
		return fs.Parse(args)
	case "run":
	default:
		return fmt.Errorf("unknown command %q\n%s", m.cmd, usage)
	}
	fs.Usage = func() {
		fmt.Fprint(m.Stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&m.tlsHostname, "tls_hostname", "", "server host:port; empty runs without a server (config_path + logger_path)")
	fs.StringVar(&m.tlsServerCerts, "tls_server_certs", "", "PEM file of the CA certificates to pin for the server")
	fs.StringVar(&m.enrollSecretPath, "enroll_secret_path", "", "file holding the enrollment secret")
	fs.StringVar(&m.hostIdentifier, "host_identifier", "hostname", "host identifier: hostname or uuid")
	fs.StringVar(&m.configPath, "config_path", "", "osquery JSON config file (used without a server)")
	fs.IntVar(&m.configRefresh, "config_refresh", 0, "seconds between config fetches; 0 fetches once")
	fs.IntVar(&m.loggerTLSPeriod, "logger_tls_period", 3, "seconds between log sends")
	fs.IntVar(&m.distributedInterval, "distributed_interval", 60, "seconds between distributed query polls")
	fs.StringVar(&m.databasePath, "database_path", "/var/lib/vigil-agent", "data directory: node key, spool, query state")
	fs.BoolVar(&m.disableEvents, "disable_events", false, "do not start the real-time event sources")
	fs.StringVar(&m.loggerPath, "logger_path", "", "directory of the filesystem logger (without a server); default database_path/log")
	fs.BoolVar(&m.loggerRotate, "logger_rotate", false, "rotate the filesystem logger's files (NAME.1 newest)")
	fs.Int64Var(&m.loggerRotateSize, "logger_rotate_size", agent.DefaultLoggerRotateSize, "bytes after which a log file is rotated")
	fs.IntVar(&m.loggerRotateMaxFiles, "logger_rotate_max_files", agent.DefaultLoggerRotateMaxFiles, "rotated files kept per log")
	fs.BoolVar(&m.longPoll, "vigil_long_poll", true, "announce Vigil capability 1 and long-poll distributed/read")
	fs.BoolVar(&m.verbose, "verbose", false, "log INFO and DEBUG messages")
	fs.BoolVar(&m.jsonLogs, "json", false, "write the agent's own logs as JSON lines")
	fs.IntVar(&m.watchdogLevel, "watchdog_level", 0, "0 normal, -1 disables the watchdog")
	fs.IntVar(&m.watchdogMemory, "watchdog_memory_limit", 0, "watchdog memory limit in MB (default 200)")
	fs.IntVar(&m.watchdogCPU, "watchdog_utilization_limit", 0, "watchdog CPU limit in percent (default 10)")
	fs.IntVar(&m.watchdogLatency, "watchdog_latency_limit", 0, "seconds a query may stay over the CPU limit before it is stopped (default 12)")
	fs.IntVar(&m.eventsMax, "events_max", 50000, "event rows buffered per table")
	fs.IntVar(&m.eventsExpiry, "events_expiry", 3600, "seconds after which queried event rows expire")
	fs.IntVar(&m.bufferedLogMax, "buffered_log_max", 1000000, "log lines spooled before the oldest are dropped (0: unlimited)")
	fs.IntVar(&m.maxLinesize, "logger_tls_max_linesize", agent.DefaultLoggerTLSMaxLinesz, "result lines longer than this many bytes are dropped and counted (vigil_event_drops)")
	fs.IntVar(&m.maxResultBytes, "distributed_max_result_bytes", agent.DefaultDistributedMaxResultBytes, "a live query result over this many bytes is answered with an error")
	fs.String("flagfile", "", "file of flags, one per line, as osquery's --flagfile (command-line flags win)")
	args, err := withFlagfile(args)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	if m.tlsHostname == "" && m.configPath == "" {
		return errors.New("run: give --tls_hostname (server) or --config_path (config file)")
	}
	return nil
}

// Run runs the chosen command until it finishes or ctx is done.
func (m *Main) Run(ctx context.Context) error {
	switch m.cmd {
	case "version":
		fmt.Fprintln(m.Stdout, "vigil-agent", vigil.Version)
		return nil
	case "query":
		e, err := m.openEngine(ctx)
		if err != nil {
			return err
		}
		res, err := e.Query(ctx, strings.Join(m.args, " "))
		if err != nil {
			return err
		}
		return printResult(m.Stdout, m.format, res)
	case "tables":
		e, err := m.openEngine(ctx)
		if err != nil {
			return err
		}
		return printTables(m.Stdout, m.format, e.Tables(), m.args)
	case "shell":
		e, err := m.openEngine(ctx)
		if err != nil {
			return err
		}
		return m.shell(ctx, e)
	}
	return m.runAgent(ctx)
}

func (m *Main) openEngine(ctx context.Context) (*table.Engine, error) {
	e, err := table.Open(ctx, table.Options{Root: m.root, Info: func() table.AgentInfo {
		return table.AgentInfo{Version: vigil.Version, Extensions: "inactive", BuildPlatform: "linux", PID: os.Getpid(), Watcher: -1}
	}})
	if err != nil {
		return nil, err
	}
	m.engine = e
	return e, nil
}

func (m *Main) logger() *slog.Logger {
	level := slog.LevelWarn
	if m.verbose {
		level = slog.LevelDebug
	}
	ho := &slog.HandlerOptions{Level: level}
	if m.jsonLogs {
		return slog.New(slog.NewJSONHandler(m.Stderr, ho))
	}
	return slog.New(slog.NewTextHandler(m.Stderr, ho))
}

func (m *Main) runAgent(ctx context.Context) error {
	opts, err := m.agentOptions()
	if err != nil {
		return err
	}
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	m.agent = a
	return a.Run(ctx)
}

// agentOptions turns the parsed flags into the agent's options, reading
// the files they name.
func (m *Main) agentOptions() (agent.Options, error) {
	opts := agent.Options{
		HostIdentifier:            m.hostIdentifier,
		DataDir:                   m.databasePath,
		ConfigPath:                m.configPath,
		LoggerPath:                m.loggerPath,
		LoggerRotate:              m.loggerRotate,
		LoggerRotateSize:          m.loggerRotateSize,
		LoggerRotateMaxFiles:      m.loggerRotateMaxFiles,
		ConfigRefresh:             time.Duration(m.configRefresh) * time.Second,
		LoggerTLSPeriod:           time.Duration(m.loggerTLSPeriod) * time.Second,
		DistributedInterval:       time.Duration(m.distributedInterval) * time.Second,
		LongPoll:                  m.longPoll,
		Root:                      m.root,
		Logger:                    m.logger(),
		Events:                    !m.disableEvents,
		EventsMax:                 m.eventsMax,
		EventsExpiry:              time.Duration(m.eventsExpiry) * time.Second,
		BufferedLogMax:            m.bufferedLogMax,
		LoggerTLSMaxLinesize:      m.maxLinesize,
		DistributedMaxResultBytes: m.maxResultBytes,
		WatchdogLevel:             m.watchdogLevel,
		WatchdogMemoryLimit:       m.watchdogMemory,
		WatchdogUtilizationLimit:  m.watchdogCPU,
		WatchdogLatencyLimit:      m.watchdogLatency,
	}
	// osquery's --buffered_log_max=0 means unlimited; the agent's 0 means
	// the default bound, its negative unlimited.
	switch {
	case m.bufferedLogMax == 0:
		opts.BufferedLogMax = -1
	case m.bufferedLogMax < 0:
		return agent.Options{}, fmt.Errorf("--buffered_log_max=%d: want 0 (unlimited) or a positive number of lines", m.bufferedLogMax)
	}
	if m.tlsHostname != "" {
		host := strings.TrimPrefix(strings.TrimSuffix(m.tlsHostname, "/"), "https://")
		opts.ServerURL = "https://" + host
	}
	if m.tlsServerCerts != "" {
		pem, err := os.ReadFile(m.tlsServerCerts)
		if err != nil {
			return agent.Options{}, fmt.Errorf("read --tls_server_certs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return agent.Options{}, fmt.Errorf("--tls_server_certs %s: no PEM certificate found", m.tlsServerCerts)
		}
		opts.RootCAs = pool
	}
	if m.enrollSecretPath != "" {
		b, err := os.ReadFile(m.enrollSecretPath)
		if err != nil {
			return agent.Options{}, fmt.Errorf("read --enroll_secret_path: %w", err)
		}
		opts.EnrollSecret = strings.TrimSpace(string(b))
	}
	if m.loggerPath == "" {
		opts.LoggerPath = filepath.Join(m.databasePath, "log")
	}
	return opts, nil
}

// Close releases what Run opened. The agent closes itself when Run returns.
func (m *Main) Close() error {
	if m.engine != nil {
		return m.engine.Close()
	}
	return nil
}

// withFlagfile puts the flags of --flagfile=PATH (one per line, # comments)
// before the command-line arguments, so that the command line wins.
func withFlagfile(args []string) ([]string, error) {
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "flagfile" {
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, errors.New("--flagfile needs a path")
			}
			val = args[i+1]
		}
		b, err := os.ReadFile(val)
		if err != nil {
			return nil, fmt.Errorf("read --flagfile: %w", err)
		}
		var out []string
		for n, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !strings.HasPrefix(line, "-") {
				return nil, fmt.Errorf("%s:%d: %q is not a flag (want --name=value)", val, n+1, line)
			}
			out = append(out, line)
		}
		return append(out, args...), nil
	}
	return args, nil
}
