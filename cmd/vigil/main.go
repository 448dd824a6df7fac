// Command vigil is Vigil's server and operator CLI: `vigil up` runs every
// layer on this machine, `vigil server` runs the server alone, and
// `vigil hosts|query|alerts` talk to a running server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
)

const usage = `vigil: open endpoint-security telemetry

Usage:
  vigil up      [--data-dir DIR] [--listen ADDR] [--tls-host NAME] [--tls-cert F --tls-key F [--tls-ca F]]
                                                   run everything on this machine (server + local agent)
  vigil server  [--data-dir DIR] [--listen ADDR] ...
                                                   run the server only (same flags as up)
  vigil hosts   [--data-dir DIR] [--json]          list enrolled hosts
  vigil query   [--data-dir DIR] [--host H] [--json] "SQL"
                                                   run a live query on hosts, rows print as they arrive
  vigil alerts  [--data-dir DIR] [--status S] [--json]
                                                   list alerts, newest first
  vigil sigma   convert|check|test ...             convert, check and test Sigma rules
  vigil bench   agents --count N --data-dir DIR    simulate N osquery agents against a server
  vigil bench   live-query --data-dir DIR          time one live query to every host until all answers are in
  vigil version [--json]

Every command takes --json. Run 'vigil COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vigil:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return runServe(ctx, rest, true, stdout, stderr)
	case "server":
		return runServe(ctx, rest, false, stdout, stderr)
	case "hosts":
		return runHosts(ctx, rest, stdout, stderr)
	case "query":
		return runQuery(ctx, rest, stdout, stderr)
	case "alerts":
		return runAlerts(ctx, rest, stdout, stderr)
	case "sigma":
		return runSigma(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "version":
		return runVersion(rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func runVersion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]string{"version": vigil.Version})
	}
	fmt.Fprintln(stdout, "vigil", vigil.Version)
	return nil
}

func runServe(ctx context.Context, args []string, up bool, stdout, stderr io.Writer) error {
	name := "server"
	if up {
		name = "up"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ServerOptions
	fs.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "data directory (state, events, certificates, profile)")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8443", "address for agents and people; use 0.0.0.0:8443 to let other hosts enroll")
	fs.StringVar(&o.RulesDir, "rules", "", "directory of extra Sigma rules to load beside the built-in ones")
	var tlsHosts multiFlag
	fs.Var(&tlsHosts, "tls-host", "DNS name or IP other hosts reach the server by: added to the private CA's server certificate, and the first is the name printed for enrolling other hosts; repeatable")
	fs.StringVar(&o.TLSCertFile, "tls-cert", "", "your server certificate (PEM, intermediates after it) instead of the private CA's; needs --tls-key")
	fs.StringVar(&o.TLSKeyFile, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&o.TLSCAFile, "tls-ca", "", "with --tls-cert: PEM of the CA agents and the CLI should trust (recorded in the profile); default the --tls-cert file itself")
	asJSON := fs.Bool("json", false, "log as JSON and print the start-up summary as JSON")
	verbose := fs.Bool("v", false, "log debug messages")
	noEvents := fs.Bool("disable-events", false, "do not start the local agent's real-time event sources")
	fs.StringVar(&o.Store, "store", "duckdb", storeFlagHelp)
	fs.StringVar(&o.Stream, "stream", "", streamFlagHelp)
	fs.BoolVar(&o.NoConsume, "no-consume", false, "with --stream: only produce; another replica's consumer group writes to the store")
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (plain HTTP, no auth: use loopback or a scrape-only network)")
	memLimit := fs.String("memory-limit", defaultMemoryLimit, "soft limit of the server's Go memory (heap and stacks; DuckDB's memory is limited apart), e.g. 1GiB; set it a fifth or so below the memory the server may use, never near what it needs (the collector then runs without pause); 0 for none; GOMEMLIMIT in the environment wins")
	fs.StringVar(&o.State, "state", "", "where hosts, live queries, people and alerts live: empty for DATA/state.db (SQLite), or postgres://USER@HOST:5432/DB shared by replicas (password in PGPASSWORD)")
	fs.DurationVar(&o.QueryTimeout, "query-timeout", control.DefaultQueryTimeout, "how long a live query waits for its hosts; keep it above the agents' distributed_interval (osquery's default is 60s)")
	fs.DurationVar(&o.LiveQueryPriority, "live-query-priority", control.DefaultLiveQueryPriority, "how long, at most, a live query to long-polling agents holds back draining logs into the store, detection runs, acknowledging the answers it has and ending other agents' holds, so the answers still to come get the CPU (logs are still accepted); 0 turns it off")
	fs.BoolVar(&o.Pprof, "pprof", false, "with --metrics-listen: also serve Go's profiler at /debug/pprof/ there")
	fs.StringVar(&o.OutputsFile, "outputs", "", "YAML file of alert outputs (webhook, slack, syslog, email)")
	fs.DurationVar(&o.DedupeWindow, "dedupe-window", 0, "fold repeated matches of a rule on a host into its open alert created within this window (default 10m; negative: one alert per match)")
	fs.Int64Var(&o.WALMaxBytes, "wal-max-bytes", 0, "bound of the write-ahead log in bytes; beyond it agents get 503 + Retry-After and keep their spool (default 1 GiB)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if err := applyMemoryLimit(*memLimit); err != nil {
		return err
	}
	o.TLSHosts = tlsHosts
	o.WithAgent = up
	o.AgentEvents = up && !*noEvents
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if *asJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	o.Logger = slog.New(h)

	m := NewMain(o)
	if err := m.Run(ctx); err != nil {
		return err
	}
	defer m.Close()
	printSummary(m, up, *asJSON, stdout)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "shutting down…")
	case err := <-m.Errors():
		m.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(45 * time.Second):
		return errors.New("shutdown did not finish in 45s; what the write-ahead log still holds is replayed at the next start")
	}
}

func printSummary(m *Main, up, asJSON bool, w io.Writer) {
	dir, _ := filepath.Abs(m.opts.DataDir)
	p := m.Profile()
	e := m.Enrollment()
	secretFile := filepath.Join(dir, "enroll_secret")
	if asJSON {
		json.NewEncoder(w).Encode(map[string]any{
			"url": p.URL, "ca_file": p.CAFile, "data_dir": dir, "profile": filepath.Join(dir, profileFile),
			"enroll_secret_file": secretFile, "local_agent": up,
			"enroll_address": e.Address, "enroll_remote": e.Remote, "enroll_certificate_covers": e.Covered,
		})
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Vigil %s is running.\n\n", vigil.Version)
	fmt.Fprintf(&b, "  API and agent endpoint  %s\n", p.URL)
	if m.ln != nil {
		fmt.Fprintf(&b, "  Listening on            %s\n", m.ln.Addr())
	}
	fmt.Fprintf(&b, "  CA certificate          %s\n", p.CAFile)
	fmt.Fprintf(&b, "  Data directory          %s\n", dir)
	fmt.Fprintf(&b, "  CLI profile             %s (admin token inside; keep it private)\n", filepath.Join(dir, profileFile))
	if up {
		fmt.Fprintf(&b, "  Local agent             monitoring this host\n")
	}
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(&b, "  vigil hosts  --data-dir %s\n", dir)
	fmt.Fprintf(&b, "  vigil query  --data-dir %s \"SELECT pid, name, cmdline FROM processes LIMIT 5\"\n", dir)
	fmt.Fprintf(&b, "  vigil alerts --data-dir %s\n", dir)
	writeEnrollHelp(&b, e, p.CAFile, secretFile, m.opts.TLSCertFile != "")
	fmt.Fprintf(&b, "\nCtrl-C stops Vigil.\n")
	fmt.Fprint(w, b.String())
}

// writeEnrollHelp says how to enroll another host: with the address it
// can reach, or why there is none.
func writeEnrollHelp(b *strings.Builder, e Enrollment, caFile, secretFile string, operatorCert bool) {
	if !e.Remote {
		_, port, _ := net.SplitHostPort(e.Address)
		fmt.Fprintf(b, "\nOther hosts cannot enroll: the server listens on loopback only. To let them, restart with\n")
		fmt.Fprintf(b, "  --listen 0.0.0.0:%s [--tls-host NAME-THEY-REACH-THIS-MACHINE-BY]\n", port)
		return
	}
	fmt.Fprintf(b, "\nEnroll another host: copy %s and %s to it, then run there\n", caFile, secretFile)
	fmt.Fprintf(b, "  vigil-agent --tls_hostname %s --tls_server_certs ca.pem --enroll_secret_path enroll_secret\n", e.Address)
	fmt.Fprintf(b, "  (osquery works too: osqueryd --tls_hostname %s --config_plugin tls --logger_plugin tls --enroll_tls_endpoint /api/v1/osquery/enroll ...)\n", e.Address)
	if !e.Covered {
		if operatorCert {
			fmt.Fprintf(b, "  Warning: the --tls-cert certificate does not cover %q, so agents will refuse it: pass --tls-host with a name it covers, or reissue it for %q.\n", e.Host, e.Host)
		} else {
			fmt.Fprintf(b, "  Warning: the server certificate does not cover %q, so agents will refuse it.\n", e.Host)
		}
	}
	if e.Hostname {
		fmt.Fprintf(b, "  (%s is this machine's hostname; if other hosts cannot resolve it, restart with --tls-host NAME-OR-IP they reach it by)\n", e.Host)
	}
}
