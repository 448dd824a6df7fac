package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sigmaCLI runs `vigil sigma ...` and returns standard output, standard
// error and the error that makes the exit status non-zero.
func sigmaCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, append([]string{"sigma"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const curlRuleYAML = `title: Curl Download
id: 11111111-2222-3333-4444-555555555555
logsource:
  product: linux
  category: process_creation
detection:
  sel:
    Image|endswith: /curl
    CommandLine|contains: http
  filter:
    User: backup
  condition: sel and not filter
level: medium
`

// badRuleYAML misspells CommandLine at line 7, column 5.
const badRuleYAML = `title: Typo
id: 99999999-2222-3333-4444-555555555555
logsource:
  product: linux
  category: process_creation
detection:
  sel:
    CommandLin|contains: nc
  condition: sel
`

const expandRuleYAML = `title: Admin Shell
id: 22222222-2222-3333-4444-555555555555
logsource: {product: linux, category: process_creation}
detection:
  sel:
    User|expand: '%admins%'
  condition: sel
`

func TestSigmaConvert(t *testing.T) {
	dir := writeFiles(t, map[string]string{"curl.yml": curlRuleYAML})
	file := filepath.Join(dir, "curl.yml")

	out, _, err := sigmaCLI(t, "convert", "--target", "duckdb", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "-- "+file+": 11111111-2222-3333-4444-555555555555 Curl Download\nSELECT * FROM process_creation WHERE ") ||
		!strings.Contains(out, `ends_with(lower(process_executable), '/curl')`) || !strings.Contains(out, "user_name") {
		t.Errorf("duckdb output:\n%s", out)
	}
	duckSQL := strings.TrimSuffix(strings.SplitN(out, "\n", 3)[1], ";")

	out, _, err = sigmaCLI(t, "convert", file, "--target", "clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SELECT * FROM process_creation WHERE ") || strings.Contains(out, "ILIKE") ||
		!strings.Contains(out, "positionCaseInsensitiveUTF8(process_command_line, 'http')") {
		t.Errorf("clickhouse output:\n%s", out)
	}

	out, _, err = sigmaCLI(t, "convert", "--json", file)
	if err != nil {
		t.Fatal(err)
	}
	objs := jsonLines(t, out)
	if len(objs) != 1 {
		t.Fatalf("json: %s", out)
	}
	want := map[string]any{"id": "11111111-2222-3333-4444-555555555555", "title": "Curl Download", "file": file,
		"target": "duckdb", "table": "process_creation", "sql": duckSQL}
	for k, v := range want {
		if objs[0][k] != v {
			t.Errorf("json %s = %v, want %v", k, objs[0][k], v)
		}
	}

	if _, _, err := sigmaCLI(t, "convert", "--target", "oracle", file); err == nil || !strings.Contains(err.Error(), "--target") {
		t.Errorf("unknown target: %v", err)
	}
}

func TestSigmaConvertErrorsAndPlaceholders(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"curl.yml":   curlRuleYAML,
		"bad.yml":    badRuleYAML,
		"expand.yml": expandRuleYAML,
		"ph.yml":     "admins: [root, toor]\n",
	})
	out, errb, err := sigmaCLI(t, "convert", filepath.Join(dir, "curl.yml"), filepath.Join(dir, "bad.yml"), filepath.Join(dir, "expand.yml"))
	if err == nil || !strings.Contains(err.Error(), "2 of 3 rules failed") {
		t.Fatalf("want a failure for 2 of 3 rules, got %v", err)
	}
	// The good rule is still printed; each bad one is named on stderr.
	if !strings.Contains(out, "Curl Download") || strings.Contains(out, "Typo") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errb, filepath.Join(dir, "bad.yml")+":8:5: ") || !strings.Contains(errb, `(did you mean "CommandLine"?)`) ||
		!strings.Contains(errb, filepath.Join(dir, "expand.yml")+":6:") || !strings.Contains(errb, "admins") {
		t.Errorf("stderr:\n%s", errb)
	}

	out, errb, err = sigmaCLI(t, "convert", "--placeholders", filepath.Join(dir, "ph.yml"), filepath.Join(dir, "expand.yml"))
	if err != nil {
		t.Fatalf("%v: %s", err, errb)
	}
	if !strings.Contains(out, "'root'") || !strings.Contains(out, "'toor'") {
		t.Errorf("placeholders not expanded:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "ph.yml"), []byte("admins: {a: b}\n"), 0o644)
	if _, _, err := sigmaCLI(t, "convert", "--placeholders", filepath.Join(dir, "ph.yml"), dir); err == nil ||
		!strings.Contains(err.Error(), "ph.yml:1:9: placeholder \"admins\"") {
		t.Errorf("bad placeholders file: %v", err)
	}
}

func TestSigmaCheck(t *testing.T) {
	good := writeFiles(t, map[string]string{"curl.yml": curlRuleYAML, "more/expand.yml": expandRuleYAML, "ph.yml.txt": "not a rule"})
	ph := filepath.Join(t.TempDir(), "ph.yaml")
	os.WriteFile(ph, []byte("admins: root\n"), 0o644)
	out, _, err := sigmaCLI(t, "check", good, "--placeholders", ph)
	if err != nil {
		t.Fatalf("check of good rules: %v\n%s", err, out)
	}
	if out != "2 files, 2 rules (0 filters); converted: clickhouse 2, duckdb 2; 0 problems\n" {
		t.Errorf("summary: %q", out)
	}

	bad := writeFiles(t, map[string]string{"curl.yml": curlRuleYAML, "bad.yml": badRuleYAML, "broken.yml": "title: [\n"})
	out, _, err = sigmaCLI(t, "check", bad)
	if err == nil {
		t.Fatalf("check passed with bad rules:\n%s", out)
	}
	badFile := filepath.Join(bad, "bad.yml")
	for _, want := range []string{
		"[duckdb] " + badFile + `:8:5: field "CommandLin" has no column in table process_creation (did you mean "CommandLine"?)`,
		"[clickhouse] " + badFile + ":8:5: ",
		filepath.Join(bad, "broken.yml") + ":",
		"3 files, 2 rules (0 filters); converted: clickhouse 1, duckdb 1; 3 problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = sigmaCLI(t, "check", "--json", bad)
	if err == nil {
		t.Fatal("check --json passed with bad rules")
	}
	objs := jsonLines(t, out)
	if len(objs) != 1 {
		t.Fatalf("json: %s", out)
	}
	rep := objs[0]
	conv, _ := rep["converted"].(map[string]any)
	if rep["ok"] != false || rep["files"] != 3.0 || rep["rules"] != 2.0 || conv["duckdb"] != 1.0 || conv["clickhouse"] != 1.0 {
		t.Errorf("report: %v", rep)
	}
	problems, _ := rep["problems"].([]any)
	found := false
	for _, p := range problems {
		p := p.(map[string]any)
		if p["file"] == badFile && p["line"] == 8.0 && p["column"] == 5.0 && p["dialect"] == "duckdb" &&
			strings.Contains(p["message"].(string), `did you mean "CommandLine"?`) {
			found = true
		}
	}
	if len(problems) != 3 || !found {
		t.Errorf("problems: %v", problems)
	}
}

func TestSigmaTestEvents(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"curl.yml": curlRuleYAML,
		"events.jsonl": `{"id": "hit", "Image": "/usr/bin/curl", "CommandLine": "curl -s HTTP://x/y", "User": "alice", "ProcessId": 3}
{"id": "quiet", "Image": "/usr/bin/curl", "CommandLine": "curl --version"}
{"id": "filtered", "Image": "/usr/bin/curl", "CommandLine": "curl http://b", "User": "backup"}

{"Image": "/opt/bin/curl", "CommandLine": "curl https://c"}
{"Image": "/usr/bin/wget", "CommandLine": "wget http://d"}
`,
		"bad.jsonl":  "{\"Image\": \"/bin/sh\"}\n\n{\"Image\": \"/bin/sh\",}\n",
		"typo.jsonl": "{\"Image\": \"/bin/sh\"}\n{\"Imagee\": \"/bin/sh\"}\n",
	})
	rule, events := filepath.Join(dir, "curl.yml"), filepath.Join(dir, "events.jsonl")
	out, _, err := sigmaCLI(t, "test", rule, "--events", events)
	if err != nil {
		t.Fatal(err)
	}
	want := `match  event hit (line 1)  "Curl Download" (11111111-2222-3333-4444-555555555555)
match  event at line 5  "Curl Download" (11111111-2222-3333-4444-555555555555)
5 events, 2 matches, 0 correlation alerts
`
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}

	out, _, err = sigmaCLI(t, "test", "--json", "--events", events, rule)
	if err != nil {
		t.Fatal(err)
	}
	objs := jsonLines(t, out)
	if len(objs) != 2 || objs[0]["type"] != "match" || objs[0]["event_id"] != "hit" || objs[0]["line"] != 1.0 ||
		objs[0]["rule_id"] != "11111111-2222-3333-4444-555555555555" || objs[0]["title"] != "Curl Download" ||
		objs[1]["line"] != 5.0 || objs[1]["event_id"] != nil {
		t.Errorf("json: %s", out)
	}

	_, _, err = sigmaCLI(t, "test", rule, "--events", filepath.Join(dir, "bad.jsonl"))
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl: line 3: not a JSON object") {
		t.Errorf("bad events line: %v", err)
	}
	_, _, err = sigmaCLI(t, "test", rule, "--events", filepath.Join(dir, "typo.jsonl"))
	if err == nil || !strings.Contains(err.Error(), `typo.jsonl: line 2: field "Imagee" has no column in table process_creation (did you mean "Image"?)`) {
		t.Errorf("unknown field: %v", err)
	}
	if _, _, err := sigmaCLI(t, "test", rule); err == nil || !strings.Contains(err.Error(), "--events") {
		t.Errorf("missing --events: %v", err)
	}
}

const sudoShellRules = `title: Sudo
id: aaaaaaaa-0000-0000-0000-000000000001
name: sudo
logsource: {product: linux, category: process_creation}
detection:
  s: {Image|endswith: /sudo}
  condition: s
---
title: Shell
id: aaaaaaaa-0000-0000-0000-000000000002
name: shell
logsource: {product: linux, category: process_creation}
detection:
  s: {Image|endswith: /sh}
  condition: s
`

const burstCorrelation = `title: Sudo Burst
id: cccccccc-0000-0000-0000-000000000001
correlation:
  type: event_count
  rules: [sudo]
  group-by: [User]
  timespan: 1m
  condition: {gte: 3}
`

const orderedCorrelation = `title: Sudo Then Shell
id: cccccccc-0000-0000-0000-000000000002
correlation:
  type: temporal_ordered
  rules: [sudo, shell]
  group-by: [User]
  timespan: 5m
`

func sudoEvent(id, at, image, user string) string {
	return fmt.Sprintf(`{"id": %q, "timestamp": "2026-03-01T10:%sZ", "Image": %q, "User": %q}`, id, at, image, user)
}

func TestSigmaTestCorrelation(t *testing.T) {
	lines := []string{
		sudoEvent("a1", "00:00", "/usr/bin/sudo", "alice"),
		sudoEvent("b1", "00:10", "/usr/bin/sudo", "bob"),
		sudoEvent("a2", "00:20", "/usr/bin/sudo", "alice"),
		sudoEvent("b2", "00:30", "/usr/bin/sudo", "bob"),
		sudoEvent("a3", "00:40", "/usr/bin/sudo", "alice"), // third sudo of alice within 1m
		sudoEvent("b3", "01:40", "/usr/bin/sudo", "bob"),   // bob's first is out of the window
		sudoEvent("c1", "00:00", "/bin/sh", "carol"),       // carol: shell, then sudo (reversed)
		sudoEvent("c2", "00:05", "/usr/bin/sudo", "carol"),
		sudoEvent("a4", "02:00", "/bin/sh", "alice"), // alice: sudo then shell within 5m
	}
	// The same events with carol's in the right order: sudo, then shell.
	fixed := append([]string(nil), lines...)
	fixed[6] = sudoEvent("c1", "00:00", "/usr/bin/sudo", "carol")
	fixed[7] = sudoEvent("c2", "00:05", "/bin/sh", "carol")
	dir := writeFiles(t, map[string]string{
		"all.yml":      sudoShellRules + "---\n" + burstCorrelation + "---\n" + orderedCorrelation,
		"rules.yml":    sudoShellRules,
		"ordered.yml":  orderedCorrelation,
		"events.jsonl": strings.Join(lines, "\n"),
		"fixed.jsonl":  strings.Join(fixed, "\n"),
	})

	out, _, err := sigmaCLI(t, "test", filepath.Join(dir, "all.yml"), "--events", filepath.Join(dir, "events.jsonl"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	matches := 0
	for _, o := range jsonLines(t, out) {
		switch o["type"] {
		case "match":
			matches++
		case "alert":
			group, _ := o["group"].(map[string]any)
			alerts = append(alerts, fmt.Sprintf("%s %v %v %v %v", o["title"], group["User"], o["event_id"], o["timestamp"], o["value"]))
		default:
			t.Errorf("unknown object %v", o)
		}
	}
	want := []string{
		"Sudo Burst alice a3 2026-03-01T10:00:40Z 3",
		"Sudo Then Shell alice a4 2026-03-01T10:02:00Z 2",
	}
	if strings.Join(alerts, "\n") != strings.Join(want, "\n") || matches != len(lines) {
		t.Errorf("alerts\n%s\nwant\n%s\n(%d matches)", strings.Join(alerts, "\n"), strings.Join(want, "\n"), matches)
	}

	// Text output names the group and the completing event.
	out, _, err = sigmaCLI(t, "test", filepath.Join(dir, "all.yml"), "--events", filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `alert  "Sudo Burst" (cccccccc-0000-0000-0000-000000000001)  group User=alice  completed by event a3 (line 5) at 2026-03-01T10:00:40Z  value 3`) ||
		!strings.Contains(out, "9 events, 9 matches, 2 correlation alerts") {
		t.Errorf("text output:\n%s", out)
	}

	// Rules and correlation in separate files; carol's sudo now comes
	// before her shell, so she alerts too.
	out, _, err = sigmaCLI(t, "test", "--json", filepath.Join(dir, "rules.yml"), filepath.Join(dir, "ordered.yml"),
		"--events", filepath.Join(dir, "fixed.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	alerts = nil
	for _, o := range jsonLines(t, out) {
		if o["type"] == "alert" {
			alerts = append(alerts, fmt.Sprintf("%v@%v", o["group"].(map[string]any)["User"], o["event_id"]))
		}
	}
	if strings.Join(alerts, ",") != "carol@c2,alice@a4" {
		t.Errorf("ordered alerts after fixing the order: %v\n%s", alerts, out)
	}

	os.WriteFile(filepath.Join(dir, "notime.jsonl"), []byte(`{"Image": "/usr/bin/sudo"}`+"\n"), 0o644)
	if _, _, err := sigmaCLI(t, "test", filepath.Join(dir, "all.yml"), "--events", filepath.Join(dir, "notime.jsonl")); err == nil ||
		!strings.Contains(err.Error(), "line 1: correlation rules need a timestamp") {
		t.Errorf("events without timestamps: %v", err)
	}
}

// The older YAML sample format says which rules must match each event;
// the command fails when one does not.
func TestSigmaTestYAMLExpect(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"curl.yml": curlRuleYAML,
		"pass.yml": `name: download
logsource: {product: linux, category: process_creation}
fields: {Image: /usr/bin/curl, CommandLine: curl http://x}
expect: [Curl Download]
---
name: quiet
logsource: {product: linux, category: process_creation}
fields: {Image: /usr/bin/ls, CommandLine: ls}
`,
		"fail.yml": `name: wrongly quiet
logsource: {product: linux, category: process_creation}
fields: {Image: /usr/bin/curl, CommandLine: curl http://x}
`,
	})
	out, _, err := sigmaCLI(t, "test", filepath.Join(dir, "curl.yml"), "--events", filepath.Join(dir, "pass.yml"))
	if err != nil || !strings.Contains(out, `ok   download: matched ["Curl Download"]`) || !strings.Contains(out, "ok   quiet: matched []") {
		t.Errorf("passing samples: %v\n%s", err, out)
	}
	out, _, err = sigmaCLI(t, "test", filepath.Join(dir, "curl.yml"), "--events", filepath.Join(dir, "fail.yml"))
	if err == nil || !strings.Contains(err.Error(), "1 of 1 events did not match as expected") ||
		!strings.Contains(out, `FAIL wrongly quiet: matched ["Curl Download"], unexpected ["Curl Download"]`) {
		t.Errorf("failing samples: %v\n%s", err, out)
	}
}

// winRuleYAML is a Windows event log rule: no Vigil event table takes its
// logsource, the Sigma catalog has one (windows_security).
const winRuleYAML = `title: Failed Logon
id: 33333333-2222-3333-4444-555555555555
logsource:
  product: windows
  service: security
detection:
  sel:
    EventID: 4625
    TargetUserName|startswith: adm_
  condition: sel
`

func TestSigmaCatalog(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"win.yml": winRuleYAML,
		"events.jsonl": `{"id": "w1", "EventID": 4625, "TargetUserName": "ADM_bob", "timestamp": "2026-01-02T03:04:05Z"}` + "\n" +
			`{"id": "w2", "EventID": 4624, "TargetUserName": "adm_bob", "timestamp": "2026-01-02T03:04:06Z"}` + "\n",
	})
	file := filepath.Join(dir, "win.yml")
	events := filepath.Join(dir, "events.jsonl")
	const noTable = `win.yml:4:3: no event table for logsource product "windows", service "security"`

	// Without --catalog every subcommand fails, naming the logsource and
	// the flag.
	out, stderr, err := sigmaCLI(t, "check", dir)
	if err == nil || !strings.Contains(out, "[duckdb] "+file+":4:3: no event table") || !strings.Contains(out, noTable) ||
		!strings.Contains(stderr, "--catalog") {
		t.Errorf("check without --catalog: err %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	_, stderr, err = sigmaCLI(t, "convert", file)
	if err == nil || !strings.Contains(stderr, noTable) || !strings.Contains(stderr, "--catalog") {
		t.Errorf("convert without --catalog: err %v\nstderr:\n%s", err, stderr)
	}
	_, _, err = sigmaCLI(t, "test", file, "--events", events)
	if err == nil || !strings.Contains(err.Error(), noTable) || !strings.Contains(err.Error(), "--catalog") {
		t.Errorf("test without --catalog: %v", err)
	}

	if out, _, err := sigmaCLI(t, "help"); err != nil || !strings.Contains(out, "--catalog compiles against the wide Sigma catalog") {
		t.Errorf("help does not explain --catalog: %v\n%s", err, out)
	}

	// With it the rule converts to the catalog's table, for both targets.
	out, stderr, err = sigmaCLI(t, "check", "--catalog", dir)
	if err != nil || !strings.Contains(out, "converted: clickhouse 1, duckdb 1; 0 problems") || stderr != "" {
		t.Errorf("check --catalog: err %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	out, _, err = sigmaCLI(t, "check", "--catalog", "--json", dir)
	var rep struct {
		Converted map[string]int `json:"converted"`
		OK        bool           `json:"ok"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Converted["duckdb"] != 1 || rep.Converted["clickhouse"] != 1 {
		t.Errorf("check --catalog --json: err %v, %s", err, out)
	}
	for _, target := range []string{"duckdb", "clickhouse"} {
		out, _, err = sigmaCLI(t, "convert", "--catalog", "--json", "--target", target, file)
		var conv map[string]string
		if err != nil || json.Unmarshal([]byte(out), &conv) != nil {
			t.Fatalf("convert --catalog --json --target %s: err %v, %q", target, err, out)
		}
		if conv["table"] != "windows_security" || conv["target"] != target ||
			!strings.Contains(conv["sql"], "FROM windows_security WHERE") || !strings.Contains(conv["sql"], "4625") {
			t.Errorf("convert --catalog --target %s: %v", target, conv)
		}
	}

	// The YAML sample format too.
	yamlEvents := filepath.Join(writeFiles(t, map[string]string{"events.yml": `name: admin failed logon
logsource: {product: windows, service: security}
fields: {EventID: 4625, TargetUserName: adm_x}
expect: [Failed Logon]
`}), "events.yml")
	_, _, err = sigmaCLI(t, "test", file, "--events", yamlEvents)
	if err == nil || !strings.Contains(err.Error(), `no event table for logsource product "windows", service "security"`) ||
		!strings.Contains(err.Error(), "--catalog") {
		t.Errorf("test (YAML events) without --catalog: %v", err)
	}
	out, _, err = sigmaCLI(t, "test", "--catalog", file, "--events", yamlEvents)
	if err != nil || !strings.Contains(out, `ok   admin failed logon: matched ["Failed Logon"]`) {
		t.Errorf("test --catalog (YAML events): err %v\n%s", err, out)
	}

	// sigma test loads the events into the catalog's table: only w1
	// matches (adm_ case-insensitively, and EventID 4625).
	out, _, err = sigmaCLI(t, "test", "--catalog", "--json", file, "--events", events)
	if err != nil {
		t.Fatalf("test --catalog: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var hit map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &hit) != nil || hit["event_id"] != "w1" || hit["type"] != "match" {
		t.Errorf("test --catalog --json: %q", out)
	}
}
