package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// benchExecutable is the vigil binary bench agents runs bench live-query
// with (tests give one they built).
var benchExecutable = os.Executable

// followLiveQuery runs `vigil bench live-query --json args...` as a child
// process and returns what it measured. The live query is followed from
// a process of its own, as an operator's vigil query would be: inside the
// load generator, the stream waited for the Go scheduler behind 10,000
// simulated agents' goroutines.
func followLiveQuery(ctx context.Context, stderr io.Writer, args ...string) liveResult {
	exe, err := benchExecutable()
	if err != nil {
		return liveResult{Error: fmt.Sprintf("bench live-query: finding vigil's executable: %v", err)}
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"bench", "live-query", "--json"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var errOut bytes.Buffer
	cmd.Stderr = io.MultiWriter(stderr, &errOut)
	out, runErr := cmd.Output()
	var res liveResult
	if err := json.Unmarshal(out, &res); err != nil {
		if runErr != nil {
			return liveResult{Error: fmt.Sprintf("bench live-query: %v: %s", runErr, strings.TrimSpace(errOut.String()))}
		}
		return liveResult{Error: fmt.Sprintf("bench live-query: reading its report: %v", err)}
	}
	return res
}

// runBenchLiveQuery is `vigil bench live-query`: it times one live query
// to every host of a server, from the POST until the done event. It
// takes the people API's flags, as vigil query does.
func runBenchLiveQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench live-query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	sql := fs.String("sql", "SELECT 1 AS one", "the live query")
	waitFor := fs.Int("wait-for", 0, "first wait until this many hosts are online (0: send at once)")
	after := fs.Duration("after", 0, "then wait this long before sending it")
	events := fs.String("events", "summary", "the stream to follow it by: summary (counts, then done) or all (every host's rows and status, as vigil query reads them)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if err := checkStreamEvents("bench live-query: --events", *events); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res := timeLiveQuery(ctx, c, *sql, *events, *waitFor, *after)
	if cf.json {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return err
		}
	} else if res.Error == "" {
		fmt.Fprintln(stdout, res.String())
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

// checkStreamEvents refuses a stream other than the two a live query
// can be followed by (the people API's ?events=).
func checkStreamEvents(flag, v string) error {
	if v != "summary" && v != "all" {
		return fmt.Errorf("%s %q: want summary or all", flag, v)
	}
	return nil
}

// String is the result in a sentence.
func (r liveResult) String() string {
	return fmt.Sprintf("live query to %d hosts (%s stream): every result in after %v (created after %v, first answer seen after %v; written by the server %v after creating it; %d ok, %d error, %d timeout, %d offline)",
		r.Hosts, r.Events, r.AllIn, r.Created, r.FirstIn, r.Written, r.Done.OK, r.Done.Error, r.Done.Timeout, r.Done.Offline)
}

// liveResult is how long a live query to the whole simulated fleet took.
type liveResult struct {
	Hosts   int           `json:"hosts"`
	Events  string        `json:"events"`       // the stream followed: summary or all
	Created time.Duration `json:"created"`      // when the query's created event came
	FirstIn time.Duration `json:"first_result"` // first result event, or first progress event of a summary
	AllIn   time.Duration `json:"all_results"`
	// Written is, by the server's clock, from the campaign's creation
	// until its last answer was written (completed_at): the server's part of
	// AllIn, without the follower's own delay in reading the stream.
	Written time.Duration `json:"written"`
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
	var id string
	err = readSSE(resp.Body, func(event string, data []byte) (bool, error) {
		switch event {
		case "created":
			res.Created = time.Since(start)
			var c struct {
				ID    string `json:"id"`
				Total int    `json:"total"`
			}
			if err := json.Unmarshal(data, &c); err != nil {
				return false, err
			}
			res.Hosts, id = c.Total, c.ID
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
		return res
	}
	var list struct {
		Queries []struct {
			ID          string    `json:"id"`
			CreatedAt   time.Time `json:"created_at"`
			CompletedAt time.Time `json:"completed_at"`
		} `json:"queries"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/queries?limit=10", nil, &list); err != nil {
		res.Error = err.Error()
		return res
	}
	for _, q := range list.Queries {
		if q.ID == id {
			res.Written = q.CompletedAt.Sub(q.CreatedAt)
		}
	}
	return res
}
