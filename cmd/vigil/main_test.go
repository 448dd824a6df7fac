package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigilhq/vigil/detect/rules"
)

// startMain runs the real wiring of `vigil up` on 127.0.0.1:0 in a temp
// data directory.
func startMain(t *testing.T, events bool) (*Main, string) {
	t.Helper()
	dir := t.TempDir()
	logLevel := slog.LevelWarn
	if testing.Verbose() {
		logLevel = slog.LevelInfo
	}
	m := NewMain(ServerOptions{
		DataDir:          dir,
		Listen:           "127.0.0.1:0",
		WithAgent:        true,
		AgentEvents:      events,
		DetectInterval:   300 * time.Millisecond,
		ScheduleInterval: time.Second,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := m.Run(ctx); err != nil {
		t.Fatalf("vigil up: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, dir
}

// builtinRule returns the id and title of a rule shipped in detect/rules.
func builtinRule(t *testing.T, file string) (id, title string) {
	t.Helper()
	b, err := fs.ReadFile(rules.FS, file)
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ ID, Title string }
	if err := yaml.Unmarshal(b, &r); err != nil || r.ID == "" || r.Title == "" {
		t.Fatalf("%s: id %q title %q: %v", file, r.ID, r.Title, err)
	}
	return r.ID, r.Title
}

// queryRows returns the rows of `vigil query --json` output.
func queryRows(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, l := range jsonLines(t, out) {
		if r, ok := l["row"].(map[string]any); ok {
			rows = append(rows, r)
		}
	}
	return rows
}

// cli runs a vigil command as a user would and returns its standard output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, args, &out, &errb)
	if err != nil {
		return out.String(), fmt.Errorf("vigil %s: %w (stderr: %s)", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// eventually retries fn until it returns true or the deadline passes; the
// deadline is a bound on waiting, not a timing assertion.
func eventually(t *testing.T, what string, d time.Duration, fn func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := fn()
		if ok {
			return
		}
		last = msg
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not seen within %s; last: %s", what, d, last)
}

func TestUpEndToEnd(t *testing.T) {
	root := os.Geteuid() == 0
	if !root {
		t.Log("not root: process events are unavailable, so the detection half of this test is skipped below")
	}
	m, dir := startMain(t, root)
	hostname, _ := os.Hostname()

	// The local agent enrolls.
	eventually(t, "local agent enrolled", time.Minute, func() (bool, string) {
		out, err := cli(t, "hosts", "--data-dir", dir, "--json")
		if err != nil {
			return false, err.Error()
		}
		hosts := jsonLines(t, out)
		return len(hosts) == 1 && hosts[0]["hostname"] == hostname, out
	})
	// Its long poll waits parked, off net/http (control/park.go).
	eventually(t, "local agent's hold parked", 30*time.Second, func() (bool, string) {
		s := m.control.Stats()
		return s.ParkedHolds == 1, fmt.Sprintf("%+v", s)
	})

	// A live query finds a child this test started.
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := strconv.Itoa(child.Process.Pid)
	out, err := cli(t, "query", "--data-dir", dir, "--json", "SELECT pid, name FROM processes WHERE pid = "+pid)
	if err != nil {
		t.Fatal(err)
	}
	rows := queryRows(t, out)
	if len(rows) != 1 || rows[0]["pid"] != pid || rows[0]["name"] != "sleep" {
		t.Fatalf("live query for pid %s returned %v (output %q)", pid, rows, out)
	}
	// The same, aimed at this host by name, as text: "HOST<TAB>col=value ...".
	out, err = cli(t, "query", "--data-dir", dir, "--host", hostname, "SELECT pid, name FROM processes WHERE pid = "+pid)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], hostname+"\t") || !strings.Contains(lines[0], `pid="`+pid+`"`) || !strings.Contains(lines[0], `name="sleep"`) {
		t.Fatalf("vigil query --host %s (text) printed %q, want one line for pid %s", hostname, out, pid)
	}
	// A host that is not enrolled is refused, naming it.
	if _, err := cli(t, "query", "--data-dir", dir, "--host", "no-such-host.invalid", "SELECT 1"); err == nil ||
		!strings.Contains(err.Error(), "no-such-host.invalid") {
		t.Fatalf("query --host of an unknown host: got %v", err)
	}

	// Invalid SQL comes back as a per-host error, not a hang.
	if _, err := cli(t, "query", "--data-dir", dir, "SELECT * FROM no_such_table"); err == nil ||
		!strings.Contains(err.Error(), "did not answer ok") {
		t.Fatalf("invalid SQL: got %v", err)
	}

	if !root {
		t.Skip("detection end to end needs root for audit process events")
	}
	// A command a built-in rule matches raises an alert with host, rule and
	// command line. The download fails harmlessly (nothing listens on port 9).
	var mark [6]byte
	rand.Read(mark[:])
	marker := "vigil-e2e-" + hex.EncodeToString(mark[:]) + ".sh"
	cmdline := "curl -s http://127.0.0.1:9/" + marker + " | sh"
	if out, err := exec.Command("bash", "-c", cmdline).CombinedOutput(); err != nil {
		t.Logf("bash -c %q: %v %s (expected: nothing listens)", cmdline, err, out)
	}
	ruleID, ruleTitle := builtinRule(t, "lnx_download_piped_to_shell.yml")
	eventually(t, "alert for the download piped to a shell", 90*time.Second, func() (bool, string) {
		out, err := cli(t, "alerts", "--data-dir", dir, "--json")
		if err != nil {
			return false, err.Error()
		}
		for _, a := range jsonLines(t, out) {
			fields, _ := a["fields"].(map[string]any)
			cl, _ := fields["process_command_line"].(string)
			if strings.Contains(cl, marker) && a["hostname"] == hostname && a["rule_id"] == ruleID && a["rule_title"] == ruleTitle &&
				toInt64(a["match_count"]) >= 1 {
				return true, ""
			}
		}
		return false, out
	})
	// The table a person reads shows the same alert.
	out, err = cli(t, "alerts", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "COMMAND LINE") {
		t.Errorf("vigil alerts: no header in %q", out)
	}
	found := false
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, marker) && strings.Contains(l, hostname) && strings.Contains(l, ruleTitle) && strings.Contains(l, "high") {
			found = true
		}
	}
	if !found {
		t.Errorf("vigil alerts (text) has no line with host %s, rule %q, level high and the command line %s:\n%s", hostname, ruleTitle, marker, out)
	}
	// Once per matching event: the alert does not repeat on later runs of
	// the rule (two more, so the rows it matched were examined again).
	runs := func() int64 {
		for _, st := range m.detect.Stats() {
			if st.RuleID == ruleID {
				return st.Runs
			}
		}
		return 0
	}
	after := runs()
	eventually(t, "two more runs of the rule", time.Minute, func() (bool, string) {
		n := runs()
		return n >= after+2, fmt.Sprintf("%d runs, want %d", n, after+2)
	})
	out, err = cli(t, "alerts", "--data-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, a := range jsonLines(t, out) {
		seen[fmt.Sprint(a["rule_id"], a["event_id"])]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("alert %s stored %d times", k, n)
		}
	}
}
