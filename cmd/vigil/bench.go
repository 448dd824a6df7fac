package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/control/loadgen"
)

// runBench dispatches `vigil bench ...`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "live-query" {
		return runBenchLiveQuery(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "agents" {
		return errors.New("usage: vigil bench agents --count N (--server URL --enroll-secret S [--ca FILE] | --data-dir DIR) [--duration D] [--long-poll] [--json]\n" +
			"       vigil bench live-query [--data-dir DIR | --server URL --token T [--ca FILE]] [--sql SQL] [--wait-for N] [--after D] [--events summary|all] [--json]")
	}
	fs := flag.NewFlagSet("bench agents", flag.ContinueOnError)
	count := fs.Int("count", 100, "simulated osquery-protocol agents")
	server := fs.String("server", "", "server URL (default: from --data-dir's profile)")
	secret := fs.String("enroll-secret", "", "enroll secret (default: DATA/enroll_secret)")
	caFile := fs.String("ca", "", "CA certificate PEM (default: from the profile)")
	dataDir := fs.String("data-dir", "", "take server, CA and enroll secret from the data `DIR` of vigil up or vigil server")
	duration := fs.Duration("duration", 60*time.Second, "how long to run after enrolling")
	logEvery := fs.Duration("log-interval", 4*time.Second, "how often each agent sends results (osquery's logger_tls_period)")
	lines := fs.Int("lines", 8, "result lines per log request")
	readEvery := fs.Duration("distributed-interval", 60*time.Second, "distributed/read polling interval without --long-poll (osquery's default is 60s)")
	longPoll := fs.Bool("long-poll", false, "announce Vigil's long-poll capability and hold distributed/read open")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cpuProfile := fs.String("cpu-profile", "", "write the load generator's own CPU profile to `FILE` (to see what the simulation costs)")
	liveQuery := fs.String("live-query", "", "once every agent is enrolled, send this live query to all hosts through the people API (needs --data-dir's profile) and time it until every result is in")
	liveAfter := fs.Duration("live-query-after", 0, "with --live-query, wait this long after every agent is online before sending it (0: at once, at the tail of the enrollment burst; a few seconds: the fleet's steady state)")
	liveEvents := fs.String("live-query-events", "summary", "with --live-query, the stream to follow it by: summary (counts, then done: what the server took) or all (every host's rows and status as vigil query reads them; the load generator, on the same cores as the server, reads 20,000 events at 10,000 agents)")
	if _, err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := checkStreamEvents("bench agents: --live-query-events", *liveEvents); err != nil {
		return err
	}
	if *dataDir != "" {
		p, err := readProfile(*dataDir)
		if err != nil {
			return err
		}
		if *server == "" {
			*server = p.URL
		}
		if *caFile == "" {
			*caFile = p.CAFile
		}
		if *secret == "" {
			b, err := os.ReadFile(filepath.Join(*dataDir, "enroll_secret"))
			if err != nil {
				return fmt.Errorf("reading enroll secret: %w", err)
			}
			*secret = strings.TrimSpace(string(b))
		}
	}
	if *server == "" || *secret == "" {
		return errors.New("bench agents: give --server and --enroll-secret, or --data-dir")
	}
	var pool *x509.CertPool
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("reading CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", *caFile)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench agents: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench agents: starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(stderr, "simulating %d agents against %s for %s…\n", *count, *server, *duration)
	var live chan liveResult
	if *liveQuery != "" {
		if *dataDir == "" {
			return errors.New("bench agents: --live-query needs --data-dir (the profile's token starts the query)")
		}
		live = make(chan liveResult, 1)
		go func() {
			live <- followLiveQuery(ctx, stderr, "--data-dir", *dataDir, "--sql", *liveQuery, "--events", *liveEvents,
				"--wait-for", strconv.Itoa(*count), "--after", liveAfter.String())
		}()
	}
	rep, err := loadgen.Run(ctx, loadgen.Options{
		URL:          *server,
		RootCAs:      pool,
		EnrollSecret: *secret,
		Agents:       *count,
		Duration:     *duration,
		LogInterval:  *logEvery,
		LinesPerLog:  *lines,
		LongPoll:     *longPoll,
		ReadInterval: *readEvery,
		Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	var lr *liveResult
	if live != nil {
		r := <-live
		lr = &r
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"report": rep, "live_query": lr})
	}
	fmt.Fprintln(stdout, rep.String())
	if lr != nil {
		if lr.Error != "" {
			fmt.Fprintf(stdout, "live query: %s\n", lr.Error)
		} else {
			fmt.Fprintln(stdout, lr.String())
		}
	}
	return nil
}
