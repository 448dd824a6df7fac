package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/agent/table"
)

func runMain(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	m := NewMain()
	m.Stdin, m.Stdout, m.Stderr = strings.NewReader(stdin), &out, &out
	if err := m.ParseFlags(args); err != nil {
		return out.String(), err
	}
	err := m.Run(context.Background())
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return out.String(), err
}

func TestQueryFormats(t *testing.T) {
	out, err := runMain(t, "", "query", "--json", "SELECT 1 AS one, 'x' AS two UNION ALL SELECT 2, 'y'")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if len(rows) != 2 || rows[1]["two"] != "y" {
		t.Fatalf("rows %v", rows)
	}
	if !strings.HasPrefix(strings.TrimSpace(out), "[\n  {\"one\":") {
		t.Fatalf("column order not kept: %q", out)
	}
	out, err = runMain(t, "", "query", "--csv", "SELECT 'a,b' AS v, 3 AS n")
	if err != nil || out != "v,n\n\"a,b\",3\n" {
		t.Fatalf("--csv output %q, %v", out, err)
	}
	out, err = runMain(t, "", "query", "SELECT 'abc' AS name, 10 AS n")
	want := "+------+----+\n| name | n  |\n+------+----+\n| abc  | 10 |\n+------+----+\n"
	if err != nil || out != want {
		t.Fatalf("table output\n%s\nwant\n%s", out, want)
	}
	if _, err := runMain(t, "", "query", "SELECT * FROM no_such_table"); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("bad SQL error: %v", err)
	}
	if _, err := runMain(t, "", "query"); err == nil {
		t.Fatal("query without SQL accepted")
	}
}

// TestTables checks that "tables --json" lists every registered table with
// its columns, types and attributes in schema order, and that the plain
// listing names every table too.
func TestTables(t *testing.T) {
	out, err := runMain(t, "", "tables", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ts []tableJSON
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		t.Fatal(err)
	}
	e, err := table.Open(context.Background(), table.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reg := e.Tables()
	if len(ts) != len(reg) {
		t.Errorf("tables --json lists %d tables, %d are registered", len(ts), len(reg))
	}
	listed := map[string]tableJSON{}
	for _, tb := range ts {
		if _, dup := listed[tb.Name]; dup {
			t.Errorf("table %s listed twice", tb.Name)
		}
		listed[tb.Name] = tb
	}
	for _, s := range reg {
		tb, ok := listed[s.Name]
		if !ok {
			t.Errorf("registered table %s missing from tables --json", s.Name)
			continue
		}
		if tb.Event != s.Event || tb.Description != s.Description {
			t.Errorf("%s: event=%v description=%q, registered event=%v description=%q", s.Name, tb.Event, tb.Description, s.Event, s.Description)
		}
		if len(tb.Columns) == 0 || len(tb.Columns) != len(s.Columns) {
			t.Errorf("%s: %d columns listed, %d in the schema", s.Name, len(tb.Columns), len(s.Columns))
			continue
		}
		for i, c := range s.Columns {
			want := columnJSON{Name: c.Name, Type: c.Type, Hidden: c.Hidden, Required: c.Required, Index: c.Index, Collate: c.Collate}
			if tb.Columns[i] != want || want.Type == "" {
				t.Errorf("%s column %d: listed %+v, schema %+v", s.Name, i, tb.Columns[i], want)
			}
		}
	}
	// Whatever the struct tags say, the document has "name" and "type"
	// strings on every column.
	var raw []struct {
		Name    string           `json:"name"`
		Columns []map[string]any `json:"columns"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, tb := range raw {
		for i, c := range tb.Columns {
			name, _ := c["name"].(string)
			typ, _ := c["type"].(string)
			if name == "" || typ == "" {
				t.Errorf("%s column %d: %v lacks a name or type", tb.Name, i, c)
			}
		}
	}
	found := false
	for _, tb := range ts {
		if tb.Name == "process_events" {
			found = tb.Event && len(tb.Columns) > 20
		}
	}
	if !found {
		t.Fatalf("process_events missing or not an event table in %d tables", len(ts))
	}
	out, err = runMain(t, "", "tables")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range reg {
		if !strings.Contains(out, "\n"+s.Name+":") && !strings.HasPrefix(out, s.Name+":") && !strings.Contains(out, "\n"+s.Name+" (event):") {
			t.Errorf("plain listing lacks %s", s.Name)
		}
	}
	out, err = runMain(t, "", "tables", "uptime")
	if err != nil || !strings.Contains(out, "total_seconds") || strings.Contains(out, "processes") {
		t.Fatalf("tables uptime: %q %v", out, err)
	}
	if _, err := runMain(t, "", "tables", "nope"); err == nil {
		t.Fatal("unknown table accepted")
	}
}

func TestShellScript(t *testing.T) {
	out, err := runMain(t, ".tables uptim\n.mode json\nSELECT 1 AS a,\n  2 AS b;\nSELECT * FROM nope;\n.schema uptime\n.quit\nSELECT 3;\n", "shell")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=> uptime", `{"a":"1","b":"2"}`, "Error: no such table: nope", "CREATE TABLE uptime(`days` INTEGER"} {
		if !strings.Contains(out, want) {
			t.Errorf("shell output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"3"`) {
		t.Error("statement after .quit ran")
	}
}

func TestRunFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"run"},                              // neither server nor config
		{"bogus"},                            // unknown command
		{"run", "--tls_hostname=x", "extra"}, // stray argument
		{"--tls_hostname=x", "--nope=1"},     // unknown flag
	} {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		if err := m.ParseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestFlagfile(t *testing.T) {
	dir := t.TempDir()
	ff := filepath.Join(dir, "osquery.flags")
	os.WriteFile(ff, []byte("# osquery flags\n--tls_hostname=example:8443\n--distributed_interval=7\n\n--host_identifier=uuid\n"), 0o600)
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags([]string{"--flagfile=" + ff, "--distributed_interval=9"}); err != nil {
		t.Fatal(err)
	}
	if m.tlsHostname != "example:8443" || m.hostIdentifier != "uuid" || m.distributedInterval != 9 {
		t.Fatalf("flagfile parsed to %q %q %d", m.tlsHostname, m.hostIdentifier, m.distributedInterval)
	}
	os.WriteFile(ff, []byte("tls_hostname=x\n"), 0o600)
	if err := NewMain().ParseFlags([]string{"--flagfile", ff}); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("bad flagfile error: %v", err)
	}
}

// TestWatchdogFlags: osquery's watchdog flags, --watchdog_latency_limit
// included, reach agent.Options from the command line and from a
// flagfile (the command line wins), and a non-integer is refused.
func TestWatchdogFlags(t *testing.T) {
	dir := t.TempDir()
	ff := filepath.Join(dir, "osquery.flags")
	if err := os.WriteFile(ff, []byte("--config_path=/etc/osquery/osquery.conf\n--watchdog_latency_limit=30\n--watchdog_memory_limit=300\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args              []string
		latency, mem, cpu int
	}{
		{[]string{"--config_path=c.json"}, 0, 0, 0}, // 0: the agent's default (12 s)
		{[]string{"--config_path=c.json", "--watchdog_latency_limit=5", "--watchdog_utilization_limit=20"}, 5, 0, 20},
		{[]string{"--config_path", "c.json", "--watchdog_latency_limit", "7"}, 7, 0, 0},
		{[]string{"--flagfile=" + ff}, 30, 300, 0},
		{[]string{"--flagfile=" + ff, "--watchdog_latency_limit=45"}, 45, 300, 0},
	} {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		if err := m.ParseFlags(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		opts, err := m.agentOptions()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if opts.WatchdogLatencyLimit != tc.latency || opts.WatchdogMemoryLimit != tc.mem || opts.WatchdogUtilizationLimit != tc.cpu {
			t.Errorf("%v: latency %d memory %d cpu %d, want %d %d %d", tc.args, opts.WatchdogLatencyLimit,
				opts.WatchdogMemoryLimit, opts.WatchdogUtilizationLimit, tc.latency, tc.mem, tc.cpu)
		}
	}
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags([]string{"--config_path=c.json", "--watchdog_latency_limit=soon"}); err == nil ||
		!strings.Contains(err.Error(), "watchdog_latency_limit") {
		t.Errorf("non-integer --watchdog_latency_limit: %v", err)
	}
}

// TestRunAgainstServer runs the daemon with osquery-named flags against a
// fake server and stops it by cancelling, as Ctrl-C does.
func TestRunAgainstServer(t *testing.T) {
	srv := agenttest.NewServer("sekret")
	defer srv.Close()
	srv.SetConfig([]byte(`{"schedule":{"info":{"query":"SELECT version FROM osquery_info","interval":1}}}`))
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	sec := filepath.Join(dir, "secret")
	os.WriteFile(sec, []byte("sekret\n"), 0o600)
	var out bytes.Buffer
	m := NewMain()
	m.Stdout, m.Stderr = &out, &out
	err := m.ParseFlags([]string{
		"--tls_hostname=" + strings.TrimPrefix(srv.URL, "https://"),
		"--tls_server_certs=" + ca, "--enroll_secret_path=" + sec,
		"--database_path=" + filepath.Join(dir, "db"), "--logger_tls_period=1", "--disable_events",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	ok := srv.WaitFor(15*time.Second, func() bool { return len(srv.Results()) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	m.Close()
	if !ok {
		t.Fatalf("no results reached the server\n%s", out.String())
	}
	if l := srv.Results()[0]; l.Name != "info" || l.Columns["version"] == "" {
		t.Fatalf("result %+v", l)
	}
	if srv.Enrolls()[0].EnrollSecret != "sekret" {
		t.Fatal("secret from --enroll_secret_path not sent")
	}
}

// TestSignalStopsCleanly builds the binary statically and checks SIGTERM
// ends it with status 0.
func TestSignalStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vigil-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "osquery.conf")
	os.WriteFile(cfg, []byte(`{"schedule":{"up":{"query":"SELECT total_seconds FROM uptime","interval":1}}}`), 0o600)
	cmd := exec.Command(bin, "run", "--config_path="+cfg, "--database_path="+filepath.Join(dir, "db"), "--disable_events", "--logger_tls_period=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "db", "log", "osqueryd.results.log")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(results); len(b) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(results); !bytes.Contains(b, []byte(`"name":"up"`)) {
		t.Fatalf("no results written before SIGTERM:\n%s", out.String())
	}
}
