package sigma_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
)

const baseRules = `title: Failed login
id: 6a4b1c2d-0000-4000-8000-000000000001
name: failed_login
logsource: {category: test}
detection:
  s: {Cmd: failed}
  condition: s
---
title: Successful login
id: 6a4b1c2d-0000-4000-8000-000000000002
name: success_login
logsource: {category: test}
detection:
  s: {Cmd: success}
  condition: s
---
title: Connection
name: connect
logsource: {category: test}
detection:
  s: {Cmd: connect}
  condition: s
---
title: Upload
name: upload
logsource: {category: test}
detection:
  s: {Cmd|startswith: upload}
  condition: s
---
title: Any process
name: any_process
logsource: {category: test}
detection:
  s: {Cmd|exists: true}
  condition: s
`

type ev struct {
	at    string // "HH:MM"
	cmd   string
	user  string
	ip    string
	bytes int64
}

type hit struct {
	at, group string
	value     float64
}

func (h hit) String() string { return fmt.Sprintf("%s@%s=%g", h.group, h.at, h.value) }

func runCorrelation(t *testing.T, db *duckdbtest.DB, extra string, events []ev) []hit {
	t.Helper()
	rules, errs := sigma.Parse("corr.yml", []byte(baseRules+"---\n"+extra))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	coll, errs := sigma.NewCollection(rules)
	if len(errs) > 0 {
		t.Fatalf("collection: %v", errs)
	}
	corr := rules[len(rules)-1]
	for _, r := range rules {
		if r.Kind == sigma.KindCorrelation && r.ID == "top" {
			corr = r
		}
	}
	q, err := sigma.CompileCorrelation(corr, sigma.Options{Mapping: testMapping{}, Collection: coll})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if _, err := db.SQL.Exec("DELETE FROM " + testTable.Name); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i, e := range events {
		var hh, mm int
		fmt.Sscanf(e.at, "%d:%d", &hh, &mm)
		db.Insert(t, testTable.Name, map[string]any{
			"event_id":   fmt.Sprintf("e%03d", i+1),
			"event_time": day.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute),
			"cmd":        e.cmd, "other": e.user, "ip": e.ip, "num": e.bytes,
		})
	}
	res, err := db.Query(context.Background(), q.SQL)
	if err != nil {
		t.Fatalf("%v\n%s", err, q.SQL)
	}
	// Bounded at the start of the day, the query sees every event.
	args := make([]any, q.BoundParams)
	for i := range args {
		args[i] = day
	}
	bounded, err := db.Query(context.Background(), q.BoundedSQL, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, q.BoundedSQL)
	}
	if fmt.Sprint(bounded.Rows) != fmt.Sprint(res.Rows) {
		t.Errorf("bounded query gives %v, unbounded %v", bounded.Rows, res.Rows)
	}
	var out []hit
	for _, r := range res.Maps() {
		h := hit{at: r["event_time"].(time.Time).Format("15:04")}
		if g, ok := r["group_1"].(string); ok {
			h.group = g
		}
		switch v := r["value"].(type) {
		case int64:
			h.value = float64(v)
		case float64:
			h.value = v
		case int32:
			h.value = float64(v)
		}
		out = append(out, h)
	}
	return out
}

type correlationCase struct {
	name, rule string
	events     []ev
	want       string
}

var correlationCases = []correlationCase{
	{"event_count over a sliding window",
		"title: Brute force\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [Other]\n  timespan: 10m\n  condition: {gte: 3}\n",
		[]ev{{"00:00", "failed", "alice", "", 0}, {"00:04", "failed", "alice", "", 0}, {"00:09", "failed", "alice", "", 0},
			{"00:00", "failed", "bob", "", 0}, {"00:06", "failed", "bob", "", 0}, {"00:12", "failed", "bob", "", 0},
			{"00:55", "failed", "dave", "", 0}, {"00:58", "failed", "dave", "", 0}, {"01:02", "failed", "dave", "", 0},
			{"00:01", "success", "alice", "", 0}},
		"[alice@00:09=3 dave@01:02=3]"},
	{"event_count by rule id with a range condition",
		"title: Some failures\ncorrelation:\n  type: event_count\n  rules: [6a4b1c2d-0000-4000-8000-000000000001]\n  group-by: [Other]\n  timespan: 1h\n  condition: {gt: 1, lte: 2}\n",
		[]ev{{"00:00", "failed", "a", "", 0}, {"00:01", "failed", "a", "", 0}, {"00:02", "failed", "a", "", 0}},
		"[a@00:01=2]"},
	{"value_count",
		"title: Scan\ncorrelation:\n  type: value_count\n  rules: [connect]\n  group-by: [Other]\n  timespan: 5m\n  condition: {field: Ip, gte: 3}\n",
		[]ev{{"00:00", "connect", "frank", "10.0.0.1", 0}, {"00:01", "connect", "frank", "10.0.0.2", 0}, {"00:02", "connect", "frank", "10.0.0.3", 0},
			{"00:00", "connect", "gina", "10.0.0.1", 0}, {"00:01", "connect", "gina", "10.0.0.1", 0}, {"00:02", "connect", "gina", "10.0.0.1", 0}},
		"[frank@00:02=3]"},
	{"temporal in any order",
		"title: Both\ncorrelation:\n  type: temporal\n  rules: [failed_login, success_login]\n  group-by: [Other]\n  timespan: 5m\n",
		[]ev{{"00:00", "success", "henry", "", 0}, {"00:01", "failed", "henry", "", 0},
			{"00:00", "failed", "ivan", "", 0}, {"00:10", "success", "ivan", "", 0}},
		"[henry@00:01=2]"},
	{"temporal_ordered checks the order",
		"title: Failed then success\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, success_login]\n  group-by: [Other]\n  timespan: 5m\n",
		[]ev{{"00:00", "success", "henry", "", 0}, {"00:01", "failed", "henry", "", 0},
			{"00:00", "failed", "jack", "", 0}, {"00:03", "success", "jack", "", 0},
			{"00:00", "failed", "kim", "", 0}, {"00:09", "success", "kim", "", 0}},
		"[jack@00:03=2]"},
	{"temporal_ordered with three rules",
		"title: Chain\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, connect, success_login]\n  group-by: [Other]\n  timespan: 10m\n",
		[]ev{{"00:00", "failed", "t1", "", 0}, {"00:01", "connect", "t1", "", 0}, {"00:02", "success", "t1", "", 0},
			{"00:00", "failed", "t2", "", 0}, {"00:01", "success", "t2", "", 0}, {"00:02", "connect", "t2", "", 0},
			{"00:00", "connect", "t3", "", 0}, {"00:01", "failed", "t3", "", 0}, {"00:02", "success", "t3", "", 0},
			{"00:00", "failed", "t4", "", 0}, {"00:01", "connect", "t4", "", 0}, {"00:20", "success", "t4", "", 0}},
		"[t1@00:02=3]"},
	{"temporal_ordered needs one event per rule",
		"title: Failure then anything\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_login, any_process]\n  group-by: [Other]\n  timespan: 5m\n",
		[]ev{{"00:00", "failed", "u1", "", 0}, {"00:00", "failed", "u2", "", 0}, {"00:01", "success", "u2", "", 0},
			{"00:02", "failed", "u3", "", 0}, {"00:03", "failed", "u4", "", 0}, {"00:04", "failed", "u5", "", 0}},
		"[u2@00:01=2]"},
	{"value_sum",
		"title: Exfiltration\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  group-by: [Other]\n  timespan: 1h\n  condition: {field: Num, gt: 1000}\n",
		[]ev{{"00:00", "upload a", "kate", "", 600}, {"00:30", "upload b", "kate", "", 500},
			{"00:00", "upload a", "leo", "", 600}, {"02:00", "upload b", "leo", "", 500}},
		"[kate@00:30=1100]"},
	{"value_avg",
		"title: Big uploads\ncorrelation:\n  type: value_avg\n  rules: [upload]\n  group-by: [Other]\n  timespan: 1h\n  condition: {field: Num, gte: 300}\n",
		[]ev{{"00:00", "upload", "kate", "", 100}, {"00:10", "upload", "kate", "", 500}, {"00:20", "upload", "kate", "", 10}},
		"[kate@00:10=300]"},
	{"value_percentile",
		"title: Rare process\ncorrelation:\n  type: value_percentile\n  rules: [any_process]\n  group-by: [Other]\n  timespan: 1h\n  condition: {field: Cmd, lte: 20}\n",
		[]ev{{"00:01", "common", "m", "", 0}, {"00:02", "common", "m", "", 0}, {"00:03", "common", "m", "", 0}, {"00:04", "common", "m", "", 0},
			{"00:05", "common", "m", "", 0}, {"00:06", "common", "m", "", 0}, {"00:07", "common", "m", "", 0}, {"00:08", "common", "m", "", 0},
			{"00:09", "common", "m", "", 0}, {"00:10", "rare", "m", "", 0}},
		"[m@00:10=10]"},
	{"chained correlations",
		"title: Many failures\nname: many_failed\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [Other]\n  timespan: 10m\n  condition: {gte: 2}\n" +
			"---\ntitle: Brute force success\nid: top\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failed, success_login]\n  group-by: [Other]\n  timespan: 10m\n",
		[]ev{{"00:00", "failed", "nora", "", 0}, {"00:01", "failed", "nora", "", 0}, {"00:02", "success", "nora", "", 0},
			{"00:00", "failed", "omar", "", 0}, {"00:02", "success", "omar", "", 0},
			{"00:00", "success", "pia", "", 0}, {"00:01", "failed", "pia", "", 0}, {"00:02", "failed", "pia", "", 0}},
		"[nora@00:02=2]"},
	{"aliases",
		"title: Same name\ncorrelation:\n  type: temporal\n  rules: [failed_login, connect]\n  group-by: [who]\n  timespan: 5m\n  aliases:\n    who:\n      failed_login: Other\n      connect: Ip\n",
		[]ev{{"00:00", "failed", "quinn", "", 0}, {"00:01", "connect", "x", "quinn", 0}, {"00:02", "connect", "x", "rosa", 0}},
		"[quinn@00:01=2]"},
	{"filters apply inside correlations",
		"title: No service accounts\nlogsource: {category: test}\nfilter:\n  rules: [failed_login]\n  sel:\n    Other|startswith: svc_\n  condition: not sel\n" +
			"---\ntitle: Brute force\nid: top\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [Other]\n  timespan: 10m\n  condition: {gte: 2}\n",
		[]ev{{"00:00", "failed", "svc_backup", "", 0}, {"00:01", "failed", "svc_backup", "", 0},
			{"00:00", "failed", "sam", "", 0}, {"00:01", "failed", "sam", "", 0}},
		"[sam@00:01=2]"},
}

func TestCorrelationsOnDuckDB(t *testing.T) {
	db := duckdbtest.Open(t)
	db.CreateTable(t, testTable)
	for _, tc := range correlationCases {
		t.Run(tc.name, func(t *testing.T) {
			got := fmt.Sprint(runCorrelation(t, db, tc.rule, tc.events))
			if got != tc.want {
				t.Errorf("hits %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCorrelationBound(t *testing.T) {
	src := baseRules + `---
title: Many failures
name: many_failed
correlation: {type: event_count, rules: [failed_login], group-by: [Other], timespan: 10m, condition: {gte: 2}}
---
title: Then success
id: top
correlation: {type: temporal_ordered, rules: [many_failed, success_login], group-by: [Other], timespan: 5m}
`
	rules, errs := sigma.Parse("b.yml", []byte(src))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	coll, _ := sigma.NewCollection(rules)
	q, err := sigma.CompileCorrelation(rules[len(rules)-1], sigma.Options{Mapping: testMapping{}, Collection: coll})
	if err != nil {
		t.Fatal(err)
	}
	if q.Lookback != 15*time.Minute || q.BoundParams != 2 || strings.Count(q.BoundedSQL, "?") != 2 {
		t.Errorf("lookback %v, params %d", q.Lookback, q.BoundParams)
	}
	db := duckdbtest.Open(t)
	db.CreateTable(t, testTable)
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i, e := range []ev{{"00:00", "failed", "u", "", 0}, {"00:09", "failed", "u", "", 0}, {"00:12", "success", "u", "", 0}} {
		var hh, mm int
		fmt.Sscanf(e.at, "%d:%d", &hh, &mm)
		db.Insert(t, testTable.Name, map[string]any{"event_id": fmt.Sprintf("b%d", i), "cmd": e.cmd, "other": e.user,
			"event_time": day.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)})
	}
	count := func(since time.Time) int {
		res, err := db.Query(context.Background(), q.BoundedSQL, since, since)
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Rows)
	}
	// The success at 00:12 is new; the bound 00:12 - lookback keeps the
	// failures it needs.
	if n := count(day.Add(12*time.Minute - q.Lookback)); n != 1 {
		t.Errorf("bounded by the lookback: %d hits, want 1", n)
	}
	if n := count(day.Add(5 * time.Minute)); n != 0 {
		t.Errorf("bounded too late: %d hits, want 0 (the first failure is cut off)", n)
	}
}

func TestCorrelationErrors(t *testing.T) {
	cases := []struct{ name, rule, want string }{
		{"unknown rule", "title: x\ncorrelation:\n  type: event_count\n  rules: [nope]\n  timespan: 1h\n  condition: {gte: 1}\n", `corr.yml:41:11: correlation refers to unknown rule "nope"`},
		{"bad timespan", "title: x\ncorrelation:\n  type: event_count\n  rules: [connect]\n  timespan: 1w\n  condition: {gte: 1}\n", `corr.yml:42:13: timespan "1w"`},
		{"misspelled type", "title: x\ncorrelation:\n  type: event_cont\n  rules: [connect]\n  timespan: 1h\n", `corr.yml:40:9: unknown correlation type "event_cont" (did you mean "event_count"?)`},
		{"no condition", "title: x\ncorrelation:\n  type: value_count\n  rules: [connect]\n  timespan: 1h\n", `value_count correlation needs a condition with a field`},
		{"cycle", "title: x\nname: self\nid: top\ncorrelation:\n  type: event_count\n  rules: [self]\n  timespan: 1h\n  condition: {gte: 1}\n", `refers to itself`},
		{"group-by field unmapped", "title: x\ncorrelation:\n  type: event_count\n  rules: [connect]\n  group-by: [Nope]\n  timespan: 1h\n  condition: {gte: 1}\n", `field "Nope" of rule "Connection"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules, errs := sigma.Parse("corr.yml", []byte(baseRules+"---\n"+tc.rule))
			var err error
			if len(errs) > 0 {
				err = errs[0]
			} else {
				coll, _ := sigma.NewCollection(rules)
				_, err = sigma.CompileCorrelation(rules[len(rules)-1], sigma.Options{Mapping: testMapping{}, Collection: coll})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
