package sigma_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
)

func parseRules(t *testing.T, docs string) []*sigma.Rule {
	t.Helper()
	rs, errs := sigma.Parse("rules.yml", []byte(docs))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return rs
}

func readEvents(t *testing.T, lines ...string) []sigma.Event {
	t.Helper()
	evs, err := sigma.ReadEvents(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestReadEvents(t *testing.T) {
	evs := readEvents(t,
		`{"id": "e1", "Image": "/usr/bin/curl", "ProcessId": 42, "timestamp": "2026-01-02T03:04:05Z"}`,
		``,
		`# a comment`,
		`{"CommandLine": null, "id": 7}`,
	)
	if len(evs) != 2 {
		t.Fatalf("events: %+v", evs)
	}
	e := evs[0]
	if e.Line != 1 || e.ID != "e1" || !e.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		e.Fields["Image"] != "/usr/bin/curl" || e.Fields["ProcessId"] != json.Number("42") || len(e.Fields) != 2 {
		t.Errorf("event 1: %+v", e)
	}
	if evs[1].Line != 4 || evs[1].ID != "7" || evs[1].Name() != "7" || evs[1].Fields["CommandLine"] != nil {
		t.Errorf("event 2: %+v", evs[1])
	}
	if (sigma.Event{Line: 9}).Name() != "line 9" {
		t.Error("name without id")
	}
	for _, tc := range []struct{ in, want string }{
		{"{}\n{\"a\": 1", "line 2: not a JSON object"},
		{"[1]", "line 1: not a JSON object"},
		{"null", "line 1: not a JSON object: null"},
		{`{"a": 1} {"b": 2}`, "line 1: more than one JSON value"},
		{"\n\n{\"timestamp\": \"yesterday\"}", `line 3: timestamp "yesterday" is not RFC 3339`},
		{`{"timestamp": 5}`, "line 1: timestamp must be RFC 3339 text, not a number"},
		{`{"id": true}`, "line 1: id must be a string or a number, not a boolean"},
		{`{"Image": {"x": 1}}`, `line 1: field "Image": an object is not a supported value`},
	} {
		_, err := sigma.ReadEvents(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

const curlRule = `title: Curl Download
id: 11111111-1111-1111-1111-111111111111
name: curl
logsource: {product: linux, category: process_creation}
detection:
  sel:
    Image|endswith: /curl
    CommandLine|contains: http
  filter:
    User: backup
  condition: sel and not filter
`

func TestRunEventsDetection(t *testing.T) {
	rules := parseRules(t, curlRule)
	evs := readEvents(t,
		`{"id": "hit", "Image": "/usr/bin/curl", "CommandLine": "curl -s HTTP://x/y", "User": "alice", "ProcessId": 3}`,
		`{"Image": "/usr/bin/curl", "CommandLine": "curl --version"}`,
		`{"id": "filtered", "Image": "/usr/bin/curl", "CommandLine": "curl http://b", "User": "backup"}`,
		`{"Image": "/usr/bin/curl", "CommandLine": "curl http://c"}`,
	)
	out, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, evs, sigma.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range out.Hits {
		got = append(got, fmt.Sprintf("%s:%s", h.Rule.Name, h.Event.Name()))
	}
	// Line 4 has no User: NOT of an absent field's match keeps the event.
	if strings.Join(got, ",") != "curl:hit,curl:line 4" || len(out.Alerts) != 0 {
		t.Errorf("hits %v alerts %v", got, out.Alerts)
	}

	for _, tc := range []struct{ line, want string }{
		{`{"Imgae": "/bin/sh"}`, `line 1: field "Imgae" has no column in table process_creation (did you mean "Image"?)`},
		{`{"ProcessId": "many"}`, `line 1: field "ProcessId" (column process_pid, BIGINT): "many" is not an integer`},
	} {
		_, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, readEvents(t, tc.line), sigma.Options{})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %s", tc.line, err, tc.want)
		}
	}
}

const sudoRules = `title: Sudo
name: sudo
logsource: {product: linux, category: process_creation}
detection:
  s: {Image|endswith: /sudo}
  condition: s
---
title: Shell
name: shell
logsource: {product: linux, category: process_creation}
detection:
  s: {Image|endswith: /sh}
  condition: s
`

func TestRunEventsCorrelation(t *testing.T) {
	rules := parseRules(t, sudoRules+`---
title: Sudo Burst
name: burst
correlation:
  type: event_count
  rules: [sudo]
  group-by: [User]
  timespan: 1m
  condition: {gte: 3}
---
title: Sudo Then Shell
correlation:
  type: temporal_ordered
  rules: [sudo, shell]
  group-by: [User]
  timespan: 5m
`)
	ev := func(id, ts, image, user string) string {
		return fmt.Sprintf(`{"id": %q, "timestamp": %q, "Image": %q, "User": %q}`, id, ts, image, user)
	}
	evs := readEvents(t,
		ev("a1", "2026-01-01T10:00:00Z", "/usr/bin/sudo", "alice"),
		ev("b1", "2026-01-01T10:00:10Z", "/usr/bin/sudo", "bob"),
		ev("a2", "2026-01-01T10:00:20Z", "/usr/bin/sudo", "alice"),
		ev("b2", "2026-01-01T10:00:30Z", "/usr/bin/sudo", "bob"),
		ev("a3", "2026-01-01T10:00:40Z", "/usr/bin/sudo", "alice"), // alice: 3 in 40s
		ev("b3", "2026-01-01T10:01:40Z", "/usr/bin/sudo", "bob"),   // bob: b1 is out of the window
		ev("c1", "2026-01-01T10:00:00Z", "/bin/sh", "carol"),       // carol: shell before sudo
		ev("c2", "2026-01-01T10:00:05Z", "/usr/bin/sudo", "carol"),
		ev("a4", "2026-01-01T10:02:00Z", "/bin/sh", "alice"),
	)
	out, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, evs, sigma.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range out.Alerts {
		if len(a.Group) != 1 || a.Group[0].Field != "User" {
			t.Fatalf("group %+v", a.Group)
		}
		got = append(got, fmt.Sprintf("%s/%v@%s", a.Rule.Title, a.Group[0].Value, a.Event.ID))
	}
	want := "Sudo Burst/alice@a3,Sudo Then Shell/alice@a4"
	if strings.Join(got, ",") != want {
		t.Errorf("alerts\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	if len(out.Hits) != 9 {
		t.Errorf("hits: %d, want every event to match sudo or shell", len(out.Hits))
	}

	noTime := readEvents(t, `{"Image": "/usr/bin/sudo"}`)
	if _, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, noTime, sigma.Options{}); err == nil ||
		err.Error() != "line 1: correlation rules need a timestamp on every event" {
		t.Errorf("missing timestamp: %v", err)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add("{\"id\": 1, \"Image\": \"/bin/sh\", \"timestamp\": \"2026-01-01T00:00:00Z\"}\n{\"x\": null}\n")
	f.Add("# c\n\n[1,2]")
	f.Add(`{"a": {"b": 1}}`)
	f.Fuzz(func(t *testing.T, in string) {
		evs, err := sigma.ReadEvents(strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error does not name a line: %v", err)
			}
			return
		}
		lines := strings.Count(in, "\n") + 1
		prev := 0
		for _, e := range evs {
			if e.Line <= prev || e.Line > lines {
				t.Fatalf("line %d after %d of %d", e.Line, prev, lines)
			}
			prev = e.Line
			for k, v := range e.Fields {
				if k == "id" || k == "timestamp" {
					t.Fatalf("reserved key %q kept as a field", k)
				}
				switch v.(type) {
				case nil, string, bool, json.Number:
				default:
					t.Fatalf("field %q has a %T", k, v)
				}
			}
		}
	})
}
