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
	"strings"
	"time"

	"github.com/vigilhq/vigil/control/loadgen"
)

// runBench dispatches `vigil bench ...`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "agents" {
		return errors.New("usage: vigil bench agents --count N (--server URL --enroll-secret S [--ca FILE] | --data-dir DIR) [--duration D] [--long-poll] [--json]")
	}
	fs := flag.NewFlagSet("bench agents", flag.ContinueOnError)
	count := fs.Int("count", 100, "simulated osquery-protocol agents")
	server := fs.String("server", "", "server URL (default: from --data-dir's profile)")
	secret := fs.String("enroll-secret", "", "enroll secret (default: DATA/enroll_secret)")
	caFile := fs.String("ca", "", "CA certificate PEM (default: from the profile)")
	dataDir := fs.String("data-dir", "", "take server, CA and enroll secret from a `vigil up` data directory")
	duration := fs.Duration("duration", 60*time.Second, "how long to run after enrolling")
	logEvery := fs.Duration("log-interval", 10*time.Second, "how often each agent sends results (osquery's logger_tls_period is 4s by default)")
	lines := fs.Int("lines", 20, "result lines per log request")
	readEvery := fs.Duration("distributed-interval", 60*time.Second, "distributed/read polling interval without --long-poll (osquery's default is 60s)")
	longPoll := fs.Bool("long-poll", false, "announce Vigil's long-poll capability and hold distributed/read open")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, err := parseInterspersed(fs, args[1:]); err != nil {
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
	fmt.Fprintf(stderr, "simulating %d agents against %s for %s…\n", *count, *server, *duration)
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
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintln(stdout, rep.String())
	return nil
}
