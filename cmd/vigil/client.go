package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
)

// client talks to the people API (web/) of a Vigil server.
type client struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags are the flags every people-API command takes.
type clientFlags struct {
	dataDir string
	server  string
	ca      string
	token   string
	json    bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "`DIR`: data directory of a running vigil up or vigil server, whose profile.json to use")
	fs.StringVar(&f.server, "server", "", "server URL (overrides the profile)")
	fs.StringVar(&f.ca, "ca", "", "CA certificate PEM file (overrides the profile)")
	fs.StringVar(&f.token, "token", os.Getenv("VIGIL_TOKEN"), "API token (overrides the profile; default $VIGIL_TOKEN)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per line")
}

func (f *clientFlags) client() (*client, error) {
	var p Profile
	if f.server == "" || f.token == "" {
		var err error
		if p, err = readProfile(f.dataDir); err != nil {
			return nil, err
		}
	}
	if f.server != "" {
		p.URL, p.ServerName = f.server, ""
	}
	if f.ca != "" {
		p.CAFile = f.ca
	}
	if f.token != "" {
		p.Token = f.token
	}
	hc, err := p.httpClient()
	if err != nil {
		return nil, err
	}
	return &client{base: strings.TrimRight(p.URL, "/"), token: p.Token, http: hc}, nil
}

// apiError is the people API's error body.
type apiError struct {
	Error string `json:"error"`
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(method, path, resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

func responseError(method, path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
}

// hostView is a host as GET /api/v1/hosts returns it.
type hostView struct {
	vigil.Host
	Online bool `json:"online"`
}

func runHosts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hosts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var out struct {
		Hosts []hostView `json:"hosts"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/hosts", nil, &out); err != nil {
		return err
	}
	if cf.json {
		enc := json.NewEncoder(stdout)
		for _, h := range out.Hosts {
			if err := enc.Encode(h); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tID\tPLATFORM\tAGENT\tLAST SEEN\tSTATUS")
	for _, h := range out.Hosts {
		status := "offline"
		if h.Online {
			status = "online"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\n", h.Hostname, h.ID, h.Platform, h.AgentName, h.AgentVersion,
			ago(h.LastSeen), status)
	}
	return tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// campaignHost is one target of a live query.
type campaignHost struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
}

// resultEvent is the data of a "result" event. Rows keep the order of their
// keys; Columns, when the server sends it, is the SELECT list's order.
type resultEvent struct {
	HostID   string       `json:"host_id"`
	Hostname string       `json:"hostname"`
	Columns  []string     `json:"columns,omitempty"`
	Rows     []orderedRow `json:"rows"`
}

type statusEvent struct {
	HostID   string `json:"host_id"`
	Hostname string `json:"hostname"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

type doneEvent struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Error   int `json:"error"`
	Timeout int `json:"timeout"`
	Offline int `json:"offline"`
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var hosts multiFlag
	fs.Var(&hosts, "host", "target host (id, host identifier or hostname); repeatable; default all hosts")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New(`usage: vigil query [--host H]... [--json] "SELECT ..."`)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	req := map[string]any{"sql": rest[0], "hosts": []string(hosts), "all": len(hosts) == 0}
	resp, err := c.openStream(ctx, http.MethodPost, "/api/v1/queries", req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return printEvents(resp.Body, cf.json, stdout, stderr)
}

// openStream sends a request for server-sent events (POST /api/v1/queries
// answers with the new query's events) and checks its status.
func (c *client) openStream(ctx context.Context, method, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, responseError(method, path, resp)
	}
	return resp, nil
}

// printEvents reads a live query's server-sent events and prints rows as
// they arrive. It returns an error when any host answered with an error.
func printEvents(body io.Reader, asJSON bool, stdout, stderr io.Writer) error {
	enc := json.NewEncoder(stdout)
	failed := 0
	err := readSSE(body, func(event string, data []byte) (bool, error) {
		switch event {
		case "created":
			var c struct {
				ID    string `json:"id"`
				Total int    `json:"total"`
			}
			if err := json.Unmarshal(data, &c); err != nil {
				return false, fmt.Errorf("bad created event: %w", err)
			}
			if !asJSON {
				fmt.Fprintf(stderr, "live query %s sent to %d host(s)\n", c.ID, c.Total)
			}
		case "result":
			var r resultEvent
			if err := json.Unmarshal(data, &r); err != nil {
				return false, fmt.Errorf("bad result event: %w", err)
			}
			for _, row := range r.Rows {
				row = row.inOrder(row.order(r.Columns))
				if asJSON {
					if err := enc.Encode(map[string]any{"host_id": r.HostID, "hostname": r.Hostname, "row": row}); err != nil {
						return false, err
					}
					continue
				}
				fmt.Fprintf(stdout, "%s\t%s\n", r.Hostname, formatRow(row))
			}
		case "status":
			var s statusEvent
			if err := json.Unmarshal(data, &s); err != nil {
				return false, fmt.Errorf("bad status event: %w", err)
			}
			if s.Status != "ok" {
				failed++
			}
			if asJSON {
				return false, enc.Encode(map[string]any{"host_id": s.HostID, "hostname": s.Hostname, "status": s.Status, "error": s.Error})
			}
			if s.Status != "ok" {
				fmt.Fprintf(stderr, "%s: %s %s\n", s.Hostname, s.Status, s.Error)
			}
		case "done":
			var d doneEvent
			_ = json.Unmarshal(data, &d)
			if !asJSON {
				fmt.Fprintf(stderr, "done: %d host(s), %d ok, %d error, %d timed out, %d offline\n", d.Total, d.OK, d.Error, d.Timeout, d.Offline)
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d host(s) did not answer ok", failed)
	}
	return nil
}

// readSSE calls fn for every event of a text/event-stream until fn says
// stop or the stream ends.
func readSSE(r io.Reader, fn func(event string, data []byte) (bool, error)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	event, data := "", []byte(nil)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event != "" || data != nil {
				stop, err := fn(event, data)
				if err != nil || stop {
					return err
				}
			}
			event, data = "", nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			d := strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stream: %w", err)
	}
	return errors.New("stream ended before the query was done")
}

func runAlerts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	status := fs.String("status", "", "only alerts with this status (open, acknowledged, closed)")
	host := fs.String("host", "", "only alerts of this host id")
	rule := fs.String("rule", "", "only alerts of this rule id")
	limit := fs.Int("limit", 100, "at most this many alerts, newest first")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := fmt.Sprintf("/api/v1/alerts?limit=%d", *limit)
	for k, v := range map[string]string{"status": *status, "host": *host, "rule": *rule} {
		if v != "" {
			q += "&" + k + "=" + urlQueryEscape(v)
		}
	}
	// Alerts with their dedupe bookkeeping (match_count, last_match_at):
	// repeats of a rule on a host within --dedupe-window are counted on
	// one alert.
	var out struct {
		Alerts []state.AlertRecord `json:"alerts"`
	}
	if err := c.do(ctx, http.MethodGet, q, nil, &out); err != nil {
		return err
	}
	if cf.json {
		enc := json.NewEncoder(stdout)
		for _, a := range out.Alerts {
			if err := enc.Encode(a); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tLEVEL\tSTATUS\tMATCHES\tHOST\tRULE\tCOMMAND LINE")
	for _, a := range out.Alerts {
		cmd, _ := a.Fields["process_command_line"].(string)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.ID, a.EventTime.Local().Format(time.DateTime), a.Level,
			a.Status, max(a.MatchCount, 1), a.Hostname, a.RuleTitle, truncate(cmd, 120))
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
