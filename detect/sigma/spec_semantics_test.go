package sigma_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
)

// Events through the specification's examples on real databases:
// thresholds met and just missed, sliding windows, order, grouping, base
// rules and filters. Each scenario runs on DuckDB (sigma.RunEvents) and
// on ClickHouse (spec_clickhouse_test.go) with the same expectations.

// specScenario runs examples of one taxonomy over events.
type specScenario struct {
	name     string
	taxonomy string
	examples []string // example files (base names); their fixtures join them
	events   func(e *events)
	// want maps a file's base name (an example or a fixture) to the ids of
	// the events its rule matches, or at which its correlation alerts.
	want map[string][]string
	// check makes further assertions on the DuckDB outcome; may be nil.
	check func(t *testing.T, out sigma.Outcome)
}

// rules returns the scenario's examples and the fixtures they name.
func (sc specScenario) rules(t *testing.T, sets map[string]*specSet) []*sigma.Rule {
	t.Helper()
	s := sets[sc.taxonomy]
	if s == nil {
		t.Fatalf("no example of taxonomy %s", sc.taxonomy)
	}
	var out []*sigma.Rule
	for _, file := range sc.examples {
		var ex *sigma.Rule
		for _, r := range s.examples {
			if filepath.Base(r.File) == file {
				ex = r
			}
		}
		if ex == nil {
			t.Fatalf("the specification has no example %s (taxonomy %s) any more", file, sc.taxonomy)
		}
		out = append(out, ex)
		for _, f := range s.fixtures {
			if names(ex, f) && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	for file := range sc.want {
		n := 0
		for _, r := range out {
			if filepath.Base(r.File) == file {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("want names %s, which is %d of the scenario's rules", file, n)
		}
	}
	return out
}

func (sc specScenario) build() *events {
	e := &events{t0: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	sc.events(e)
	return e
}

// verify compares the ids each rule produced with the scenario's want.
func (sc specScenario) verify(t *testing.T, rules []*sigma.Rule, got map[*sigma.Rule][]string) {
	t.Helper()
	for _, r := range rules {
		want, ok := sc.want[filepath.Base(r.File)]
		if !ok {
			continue
		}
		ids := got[r]
		if ids == nil {
			ids = []string{}
		}
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s (%s): got %v, want %v", r.Title, filepath.Base(r.File), ids, want)
		}
	}
}

func names(x, r *sigma.Rule) bool {
	var refs []string
	switch x.Kind {
	case sigma.KindCorrelation:
		refs = x.Correlation.Rules
	case sigma.KindFilter:
		refs = x.Filter.Rules
	}
	for _, ref := range refs {
		if ref == r.ID || (r.Name != "" && ref == r.Name) {
			return true
		}
	}
	return false
}

// events builds sample events at offsets from a fixed start (whole
// seconds: ClickHouse 18.16's DateTime has no fractions).
type events struct {
	t0  time.Time
	evs []sigma.Event
}

func (e *events) add(id string, at time.Duration, fields map[string]any) {
	e.evs = append(e.evs, sigma.Event{Line: len(e.evs) + 1, ID: id, Time: e.t0.Add(at), Fields: fields})
}

func num(n int) json.Number { return json.Number(fmt.Sprint(n)) }

var specScenarios = []specScenario{{
	name: "event_count", taxonomy: "sigma", examples: []string{"event_count.yml"},
	events: func(e *events) {
		logon := func(host string, code int) map[string]any {
			return map[string]any{"EventID": num(code), "ComputerName": host, "WorkstationName": "WKS", "User": "alice"}
		}
		// ws1: 100 failed logons 30 s apart, within the hour: the 100th alerts.
		for i := 1; i <= 100; i++ {
			e.add(fmt.Sprintf("ws1-%d", i), time.Duration(i)*30*time.Second, logon("ws1", 4625))
		}
		// ws2: 99 failed logons and a successful one (not the base rule).
		for i := 1; i <= 99; i++ {
			e.add(fmt.Sprintf("ws2-%d", i), time.Duration(i)*30*time.Second, logon("ws2", 4625))
		}
		e.add("ws2-ok", 51*time.Minute, logon("ws2", 4624))
		// ws3: 100 failed logons 40 s apart span 66 minutes: never 100 in an hour.
		for i := 1; i <= 100; i++ {
			e.add(fmt.Sprintf("ws3-%d", i), time.Duration(i)*40*time.Second, logon("ws3", 4625))
		}
	},
	want: map[string][]string{"event_count.yml": {"ws1-100"}},
	check: func(t *testing.T, out sigma.Outcome) {
		for _, a := range out.Alerts {
			if a.Value != 100 || len(a.Group) != 1 || a.Group[0].Field != "ComputerName" || a.Group[0].Value != "ws1" {
				t.Errorf("alert %s: value %v, group %v; want 100 and ComputerName ws1", a.Event.ID, a.Value, a.Group)
			}
		}
	},
}, {
	name: "value_count", taxonomy: "sigma", examples: []string{"value_count.yml"},
	events: func(e *events) {
		for i := range 100 { // 100 users in a day from WKS1: alert at the last
			e.add(fmt.Sprintf("a-%d", i), time.Duration(i)*time.Minute,
				map[string]any{"EventID": num(4625), "ComputerName": "dc1", "WorkstationName": "WKS1", "User": fmt.Sprintf("user%d", i)})
		}
		for i := range 100 { // 99 users from WKS2, one of them twice
			e.add(fmt.Sprintf("b-%d", i), time.Duration(i)*time.Minute,
				map[string]any{"EventID": num(4625), "ComputerName": "dc1", "WorkstationName": "WKS2", "User": fmt.Sprintf("user%d", min(i, 98))})
		}
		for i := range 100 { // 99 users from WKS3 and one event without a user: an empty value is no value, on both engines
			user := fmt.Sprintf("user%d", i)
			if i == 50 {
				user = ""
			}
			e.add(fmt.Sprintf("c-%d", i), time.Duration(i)*time.Minute,
				map[string]any{"EventID": num(4625), "ComputerName": "dc1", "WorkstationName": "WKS3", "User": user})
		}
	},
	want: map[string][]string{"value_count.yml": {"a-99"}},
}, {
	// Both temporal examples over the same base rules: all three commands
	// within 5 minutes, and for temporal_ordered in the listed order.
	name: "temporal", taxonomy: "sigma", examples: []string{"temporal.yml", "temporal_ordered.yml"},
	events: func(e *events) {
		cmd := func(host, user, image string) map[string]any {
			return map[string]any{"ComputerName": host, "User": user, "Image": `C:\Windows\System32\` + image, "CommandLine": image}
		}
		// h1: a, b, c in order within 5 minutes.
		e.add("h1-a", 0, cmd("h1", "alice", "whoami.exe"))
		e.add("h1-b", time.Minute, cmd("h1", "alice", "net.exe"))
		e.add("h1-c", 2*time.Minute, cmd("h1", "alice", "ipconfig.exe"))
		// h2: c, b, a: all three, in the wrong order.
		e.add("h2-c", 0, cmd("h2", "bob", "ipconfig.exe"))
		e.add("h2-b", time.Minute, cmd("h2", "bob", "net.exe"))
		e.add("h2-a", 2*time.Minute, cmd("h2", "bob", "whoami.exe"))
		// h3: in order, over more than 5 minutes.
		e.add("h3-a", 0, cmd("h3", "carol", "whoami.exe"))
		e.add("h3-b", 100*time.Second, cmd("h3", "carol", "net.exe"))
		e.add("h3-c", 400*time.Second, cmd("h3", "carol", "ipconfig.exe"))
		// h4: in order, but the last by another user (another group).
		e.add("h4-a", 0, cmd("h4", "dave", "whoami.exe"))
		e.add("h4-b", time.Minute, cmd("h4", "dave", "net.exe"))
		e.add("h4-c", 2*time.Minute, cmd("h4", "erin", "ipconfig.exe"))
	},
	want: map[string][]string{"temporal.yml": {"h1-c", "h2-a"}, "temporal_ordered.yml": {"h1-c"}},
	check: func(t *testing.T, out sigma.Outcome) {
		for _, a := range out.Alerts {
			if a.Event.ID == "h1-c" && (len(a.Group) != 2 || a.Group[0].Value != "h1" || a.Group[1].Value != "alice") {
				t.Errorf("%s alert at h1-c: group %v, want ComputerName h1, User alice", a.Rule.Title, a.Group)
			}
		}
	},
}, {
	name: "value_sum", taxonomy: "sigma", examples: []string{"value_sum.yml"},
	events: func(e *events) {
		web := func(ip, user, method string, bytes int) map[string]any {
			return map[string]any{"SourceIP": ip, "User": user, "cs-method": method, "bytes_sent": num(bytes)}
		}
		// 400 kB three times in 20 minutes: over 1,000,000 at the third.
		e.add("a-1", 0, web("10.0.0.5", "alice", "POST", 400000))
		e.add("a-2", 10*time.Minute, web("10.0.0.5", "alice", "PUT", 400000))
		e.add("a-x", 15*time.Minute, web("10.0.0.5", "alice", "CONNECT", 9000000)) // not the base rule
		e.add("a-3", 20*time.Minute, web("10.0.0.5", "alice", "POST", 400000))
		// 600 kB twice, 61 minutes apart: never over in one hour.
		e.add("b-1", 0, web("10.0.0.6", "bob", "POST", 600000))
		e.add("b-2", 61*time.Minute, web("10.0.0.6", "bob", "POST", 600000))
		// 600 kB by two users of one address: other groups.
		e.add("c-1", time.Minute, web("10.0.0.7", "carol", "POST", 600000))
		e.add("c-2", 2*time.Minute, web("10.0.0.7", "dave", "POST", 600000))
	},
	want: map[string][]string{"value_sum.yml": {"a-3"}},
	check: func(t *testing.T, out sigma.Outcome) {
		for _, a := range out.Alerts {
			if a.Value != 1200000 {
				t.Errorf("alert %s: sum %v, want 1200000", a.Event.ID, a.Value)
			}
		}
	},
}, {
	name: "value_avg", taxonomy: "sigma", examples: []string{"value_avg.yml"},
	events: func(e *events) {
		fw := func(ip, user, action string, bytes int) map[string]any {
			return map[string]any{"SourceIP": ip, "User": user, "action": action, "BytesOut": num(bytes)}
		}
		e.add("a-1", 0, fw("10.0.0.5", "alice", "allow", 400))
		e.add("a-2", time.Hour, fw("10.0.0.5", "alice", "allow", 700)) // average 550
		e.add("b-1", 0, fw("10.0.0.6", "bob", "allow", 500))
		e.add("b-x", time.Minute, fw("10.0.0.6", "bob", "deny", 100000)) // not the base rule
		e.add("b-2", time.Hour, fw("10.0.0.6", "bob", "allow", 500))     // 500 is not over 500
		e.add("c-1", 0, fw("10.0.0.7", "carol", "allow", 900))
		e.add("c-2", 25*time.Hour, fw("10.0.0.7", "carol", "allow", 200)) // alone in its day
	},
	want: map[string][]string{"value_avg.yml": {"c-1", "a-2"}},
}, {
	name: "value_percentile", taxonomy: "sigma", examples: []string{"value_percentile.yml"},
	events: func(e *events) {
		proc := func(host, image string) map[string]any {
			return map[string]any{"ComputerName": host, "Image": image}
		}
		// p1: 99 cmd.exe then one rare program: 1 of 100 is 1 %, at most 1.
		for i := range 99 {
			e.add(fmt.Sprintf("p1-%d", i), time.Duration(i)*time.Minute, proc("p1", `C:\Windows\System32\cmd.exe`))
		}
		e.add("p1-rare", 100*time.Minute, proc("p1", `C:\Users\x\rare.exe`))
		// p2: 98 cmd.exe, then the rare program is 1 of 99 (over 1 %);
		// programs not ending in .exe are not the base rule's events.
		for i := range 98 {
			e.add(fmt.Sprintf("p2-%d", i), time.Duration(i)*time.Minute, proc("p2", `C:\Windows\System32\cmd.exe`))
		}
		e.add("p2-com", 98*time.Minute, proc("p2", `C:\Windows\System32\more.com`))
		e.add("p2-rare", 100*time.Minute, proc("p2", `C:\Users\x\rare.exe`))
	},
	want: map[string][]string{"value_percentile.yml": {"p1-rare"}},
}, {
	name: "event_count_ecs", taxonomy: "ecs", examples: []string{"event_count_ecs.yml"},
	events: func(e *events) {
		q := func(name, code string) map[string]any {
			return map[string]any{"dns.question.name": name, "dns.response.code": code}
		}
		for i := 1; i <= 100; i++ {
			e.add(fmt.Sprintf("a-%d", i), time.Duration(i)*10*time.Second, q("a.example", "NXDOMAIN"))
		}
		for i := 1; i <= 99; i++ {
			e.add(fmt.Sprintf("b-%d", i), time.Duration(i)*10*time.Second, q("b.example", "NXDOMAIN"))
		}
		e.add("b-ok", 20*time.Minute, q("b.example", "NOERROR"))
	},
	want: map[string][]string{"event_count_ecs.yml": {"a-100"}},
}, {
	// The filter is AND-ed to the rules it names (pySigma's reading, see
	// doc.go) and never applies to a rule of another logsource.
	name: "filter", taxonomy: "sigma", examples: []string{"filter_1.yml"},
	events: func(e *events) {
		rar := func(user string) map[string]any {
			return map[string]any{"Image": `C:\Program Files\WinRAR\rar.exe`, "CommandLine": "rar.exe a out.rar docs", "User": user}
		}
		e.add("adm", 0, rar("adm_bob"))
		e.add("user", time.Minute, rar("alice"))
		e.add("jump", 2*time.Minute, map[string]any{"EventID": num(4624), "ComputerName": "jump01"})
	},
	want: map[string][]string{"rar.yml": {"adm"}, "jump_host.yml": {"jump"}},
}, {
	name: "filter_ecs", taxonomy: "ecs", examples: []string{"filter_ecs.yml"},
	events: func(e *events) {
		e.add("google", 0, map[string]any{"dns.question.name": "www.google.com"})
		e.add("bing", time.Minute, map[string]any{"dns.question.name": "www.bing.com"})
		e.add("other", 2*time.Minute, map[string]any{"dns.question.name": "example.org"})
	},
	want: map[string][]string{"ecs_dns_search.yml": {"google"}, "ecs_dns_any.yml": {"google"}},
}, {
	name: "rule", taxonomy: "sigma", examples: []string{"rule_1.yml"},
	events: func(e *events) {
		e.add("error", 0, map[string]any{"Provider_Name": "application error"}) // values are case-insensitive
		e.add("hang", time.Minute, map[string]any{"Provider_Name": "Application Hang"})
		e.add("longer", 2*time.Minute, map[string]any{"Provider_Name": "Application Error Reporting"})
	},
	want: map[string][]string{"rule_1.yml": {"error"}},
}, {
	name: "rule_ecs", taxonomy: "ecs", examples: []string{"rule_ecs.yml"},
	events: func(e *events) {
		e.add("exact", 0, map[string]any{"dns.question.name": "SigmaHQ"})
		e.add("longer", time.Minute, map[string]any{"dns.question.name": "sigmahq.io"})
	},
	want: map[string][]string{"rule_ecs.yml": {"exact"}},
}}

// TestSpecScenarios runs the scenarios on DuckDB through sigma.RunEvents,
// as `vigil sigma test` does.
func TestSpecScenarios(t *testing.T) {
	sets := loadSpecSets(t)
	for _, sc := range specScenarios {
		t.Run(sc.name, func(t *testing.T) {
			rules := sc.rules(t, sets)
			evs := sc.build()
			out, err := sigma.RunEvents(context.Background(), duckdbtest.Open(t), rules, evs.evs, sigma.Options{Mapping: specMapping{}})
			if err != nil {
				t.Fatalf("running the rules: %v", err)
			}
			got := map[*sigma.Rule][]string{}
			for _, h := range out.Hits {
				got[h.Rule] = append(got[h.Rule], h.Event.ID)
			}
			for _, a := range out.Alerts {
				got[a.Rule] = append(got[a.Rule], a.Event.ID)
			}
			sc.verify(t, rules, got)
			if sc.check != nil {
				sc.check(t, out)
			}
		})
	}
}

// TestSpecScenariosCoverExamples: every example of the specification is
// run on events by some scenario.
func TestSpecScenariosCoverExamples(t *testing.T) {
	sets := loadSpecSets(t)
	covered := map[string]bool{}
	for _, sc := range specScenarios {
		for _, f := range sc.examples {
			covered[sc.taxonomy+"/"+f] = true
		}
	}
	for _, s := range sets {
		for _, r := range s.examples {
			if key := s.taxonomy + "/" + filepath.Base(r.File); !covered[key] {
				t.Errorf("no scenario runs the example %s", key)
			}
		}
	}
}
