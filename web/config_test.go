package web

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func TestConfigAndLabels(t *testing.T) {
	e := newEnv(t, nil)
	web := e.enroll("web-01", false)
	other := e.enroll("db-01", false)
	admin := e.tokens[state.RoleAdmin]

	var cur ConfigView
	e.do("GET", "/api/v1/config", e.tokens[state.RoleViewer], nil).decode(t, &cur)
	if cur.Version != 0 {
		t.Fatalf("initial config %+v", cur)
	}
	zero := int64(0)
	fc := control.FleetConfig{Packs: map[string]control.Pack{
		"nginx": {Queries: map[string]osquery.ScheduledQuery{"procs": {Query: "SELECT * FROM processes WHERE name = 'nginx'", Interval: 60}},
			Labels: []string{"role:web"}},
	}}
	r := e.do("PUT", "/api/v1/config", admin, ConfigUpdate{Config: fc, BaseVersion: &zero, Comment: "nginx pack"})
	var v state.ConfigVersion
	r.decode(t, &v)
	if r.status != 200 || v.Version != 1 {
		t.Fatalf("PUT config: %d %s", r.status, r.body)
	}
	// Same base again: someone saved meanwhile.
	if r := e.do("PUT", "/api/v1/config", admin, ConfigUpdate{Config: fc, BaseVersion: &zero}); r.status != 409 {
		t.Errorf("stale base: %d %s", r.status, r.body)
	}
	// Invalid: 400 naming the place.
	bad := control.FleetConfig{Packs: map[string]control.Pack{"x": {Queries: map[string]osquery.ScheduledQuery{"q": {Query: "SELECT 1"}}}}}
	if r := e.do("PUT", "/api/v1/config", admin, ConfigUpdate{Config: bad}); r.status != 400 || !strings.Contains(r.errorMsg(), "packs.x.queries.q: interval 0") {
		t.Errorf("invalid config: %d %s", r.status, r.body)
	}

	if r := e.do("PUT", "/api/v1/hosts/"+web.host.ID+"/labels", admin, LabelsRequest{Labels: []string{"role:web"}}); r.status != 200 {
		t.Fatalf("labels: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", "/api/v1/hosts/"+web.host.ID+"/labels", admin, LabelsRequest{Labels: []string{"NOT OK"}}); r.status != 400 {
		t.Errorf("bad label: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", "/api/v1/hosts/nope/labels", admin, LabelsRequest{Labels: []string{"x"}}); r.status != 404 {
		t.Errorf("unknown host: %d %s", r.status, r.body)
	}
	hostPacks := func(a *agent) (HostConfigView, []string) {
		var hc HostConfigView
		e.do("GET", "/api/v1/hosts/"+a.host.ID+"/config", e.tokens[state.RoleViewer], nil).decode(t, &hc)
		var names []string
		for n := range hc.Config.Packs {
			names = append(names, n)
		}
		return hc, names
	}
	hc, names := hostPacks(web)
	if hc.ConfigVersion != 1 || len(names) != 1 || names[0] != "nginx" || !strings.Contains(strings.Join(hc.Labels, ","), "role:web") {
		t.Errorf("web host config %+v", hc)
	}
	if _, names := hostPacks(other); len(names) != 0 {
		t.Errorf("untargeted host got packs %v", names)
	}
	// What the agent itself is served matches.
	var served osquery.Config
	e.postAgent(osquery.PathConfig, osquery.NodeRequest{NodeKey: web.key}, &served)
	if _, ok := served.Packs["nginx"]; !ok {
		t.Errorf("agent was served %v", served.Packs)
	}
	var versions struct {
		Versions []state.ConfigVersion `json:"versions"`
	}
	e.do("GET", "/api/v1/config/versions", e.tokens[state.RoleViewer], nil).decode(t, &versions)
	if len(versions.Versions) != 1 || versions.Versions[0].Comment != "nginx pack" || versions.Versions[0].Actor != "admin-user" {
		t.Errorf("versions %+v", versions)
	}
	var one ConfigView
	e.do("GET", "/api/v1/config/versions/1", e.tokens[state.RoleViewer], nil).decode(t, &one)
	if b, _ := json.Marshal(one.Config); !strings.Contains(string(b), "nginx") {
		t.Errorf("version 1: %s", b)
	}
	for _, p := range []string{"/api/v1/config/versions/0", "/api/v1/config/versions/x"} {
		if r := e.do("GET", p, admin, nil); r.status != 400 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	if r := e.do("GET", "/api/v1/config/versions/7", admin, nil); r.status != 404 {
		t.Errorf("missing version: %d", r.status)
	}
}
