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
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
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
	dataDir := fs.String("data-dir", "", "take server, CA and enroll secret from the data `DIR` of vigil up or vigil server")
	duration := fs.Duration("duration", 60*time.Second, "how long to run after enrolling")
	logEvery := fs.Duration("log-interval", 10*time.Second, "how often each agent sends results (osquery's logger_tls_period is 4s by default)")
	lines := fs.Int("lines", 20, "result lines per log request")
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
	if *liveEvents != "summary" && *liveEvents != "all" {
		return fmt.Errorf("bench agents: --live-query-events %q: want summary or all", *liveEvents)
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
		cf := clientFlags{dataDir: *dataDir}
		c, err := cf.client()
		if err != nil {
			return err
		}
		live = make(chan liveResult, 1)
		go func() { live <- timeLiveQuery(ctx, c, *liveQuery, *liveEvents, *count, *liveAfter) }()
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
			fmt.Fprintf(stdout, "live query to %d hosts (%s stream): every result in after %v (created after %v, first answer seen after %v; %d ok, %d error, %d timeout, %d offline)\n",
				lr.Hosts, lr.Events, lr.AllIn, lr.Created, lr.FirstIn, lr.Done.OK, lr.Done.Error, lr.Done.Timeout, lr.Done.Offline)
		}
	}
	return nil
}

// liveResult is how long a live query to the whole simulated fleet took.
type liveResult struct {
	Hosts   int           `json:"hosts"`
	Events  string        `json:"events"`       // the stream followed: summary or all
	Created time.Duration `json:"created"`      // when the query's created event came
	FirstIn time.Duration `json:"first_result"` // first result event, or first progress event of a summary
	AllIn   time.Duration `json:"all_results"`
	Done    doneEvent     `json:"done"`
	Error   string        `json:"error,omitempty"`
}

// timeLiveQuery waits until want hosts are online and then after, sends
// sql to all of them and times the campaign until its done event, read
// from the stream of the given events (summary or all).
func timeLiveQuery(ctx context.Context, c *client, sql, events string, want int, after time.Duration) liveResult {
	for {
		var out struct {
			Hosts []hostView `json:"hosts"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/hosts", nil, &out); err != nil {
			return liveResult{Error: err.Error()}
		}
		online := 0
		for _, h := range out.Hosts {
			if h.Online {
				online++
			}
		}
		if online >= want {
			break
		}
		select {
		case <-ctx.Done():
			return liveResult{Error: ctx.Err().Error()}
		case <-time.After(time.Second):
		}
	}
	select {
	case <-ctx.Done():
		return liveResult{Error: ctx.Err().Error()}
	case <-time.After(after):
	}
	start := time.Now()
	resp, err := c.openStream(ctx, http.MethodPost, "/api/v1/queries?events="+url.QueryEscape(events), map[string]any{"sql": sql, "all": true})
	if err != nil {
		return liveResult{Error: err.Error()}
	}
	defer resp.Body.Close()
	res := liveResult{Events: events}
	err = readSSE(resp.Body, func(event string, data []byte) (bool, error) {
		switch event {
		case "created":
			res.Created = time.Since(start)
			var c struct {
				Total int `json:"total"`
			}
			if err := json.Unmarshal(data, &c); err != nil {
				return false, err
			}
			res.Hosts = c.Total
		case "result", "progress":
			if res.FirstIn == 0 {
				res.FirstIn = time.Since(start)
			}
		case "done":
			res.AllIn = time.Since(start)
			return true, json.Unmarshal(data, &res.Done)
		}
		return false, nil
	})
	if err != nil {
		res.Error = err.Error()
	}
	return res
}
