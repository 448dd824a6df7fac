package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func TestFleetConfigValidate(t *testing.T) {
	bad := FleetConfig{
		Schedule: map[string]osquery.ScheduledQuery{"bad name": {Query: "SELECT 1", Interval: 10}, "zero": {Query: "SELECT 1"}},
		Packs: map[string]Pack{
			"empty": {},
			"p":     {Queries: map[string]osquery.ScheduledQuery{"q": {Query: " ", Interval: 5}}, Labels: []string{"Bad Label"}, Shard: 101},
		},
	}
	err := bad.Validate()
	if !errors.Is(err, vigil.ErrInvalid) {
		t.Fatalf("Validate = %v", err)
	}
	for _, want := range []string{"schedule.bad name: name", "schedule.zero: interval 0", "packs.empty: no queries",
		"packs.p.queries.q: query is empty", `packs.p.labels: "Bad Label"`, "packs.p.shard: 101"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err := (FleetConfig{}).Validate(); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestFleetConfigTargeting(t *testing.T) {
	e := newEnv(t, nil)
	ctx := WithSource(context.Background(), "198.51.100.4:999")
	key, web := e.enroll("enroll.json") // ubuntu, osquery
	_, laptop := e.enroll("enroll_vigil.json")
	if err := e.db.SetHostLabels(ctx, web.ID, []string{"role:web"}); err != nil {
		t.Fatal(err)
	}
	fc := FleetConfig{
		Options:  map[string]any{"distributed_interval": 30},
		Schedule: map[string]osquery.ScheduledQuery{"users": {Query: "SELECT * FROM users", Interval: 3600}},
		Packs: map[string]Pack{
			"web":    {Queries: map[string]osquery.ScheduledQuery{"nginx": {Query: "SELECT * FROM process_events WHERE path LIKE '%nginx'", Interval: 60}}, Labels: []string{"role:web"}},
			"ubuntu": {Queries: map[string]osquery.ScheduledQuery{"debs": {Query: "SELECT * FROM deb_packages", Interval: 3600}}, Labels: []string{"platform:ubuntu"}, Discovery: []string{"SELECT 1"}},
			"vigil":  {Queries: map[string]osquery.ScheduledQuery{"socks": {Query: "SELECT * FROM socket_events", Interval: 60}}, Labels: []string{"agent:vigil-agent"}},
		},
	}
	v, err := e.srv.PutFleetConfig(ctx, "alice", fc, 0, "first")
	if err != nil || v.Version != 1 {
		t.Fatalf("PutFleetConfig = %+v, %v", v, err)
	}
	// Editing from a stale version is refused.
	if _, err := e.srv.PutFleetConfig(ctx, "bob", fc, 0, "stale"); !errors.Is(err, vigil.ErrConflict) {
		t.Errorf("stale edit: %v", err)
	}

	packs := func(h vigil.Host) []string {
		cfg, ver, err := e.srv.EffectiveConfig(ctx, h)
		if err != nil || ver != 1 {
			t.Fatalf("EffectiveConfig = %v %v", ver, err)
		}
		if cfg.Schedule["users"].Query == "" || cfg.Schedule["processes"].Query == "" {
			t.Errorf("schedules not merged: %v", cfg.Schedule)
		}
		if fmt.Sprint(cfg.Options["distributed_interval"]) != "30" {
			t.Errorf("options %v", cfg.Options)
		}
		return sortedKeys(cfg.Packs)
	}
	if got := fmt.Sprint(packs(web)); got != "[ext net ubuntu web]" {
		t.Errorf("web host packs %s", got)
	}
	if got := fmt.Sprint(packs(laptop)); got != "[ext net vigil]" {
		t.Errorf("laptop packs %s", got)
	}
	// The built-in config is not modified by merging.
	if _, ok := testConfig.Schedule["users"]; ok {
		t.Error("merge wrote into the built-in config")
	}

	// Served over the osquery API, and its query names known to ingest.
	r := e.post(osquery.PathConfig, fixture(t, "config.json", "NODE_KEY", key))
	var cfg osquery.Config
	json.Unmarshal(r.body, &cfg)
	var ub struct {
		Queries   map[string]osquery.ScheduledQuery `json:"queries"`
		Discovery []string                          `json:"discovery"`
		Labels    []string                          `json:"labels"`
	}
	if err := json.Unmarshal(cfg.Packs["ubuntu"], &ub); err != nil || ub.Queries["debs"].Interval != 3600 || len(ub.Discovery) != 1 || ub.Labels != nil {
		t.Errorf("served ubuntu pack %s (%v)", cfg.Packs["ubuntu"], err)
	}
	if got := e.srv.OsqueryTableOf("pack_web_nginx"); got != "process_events" {
		t.Errorf("OsqueryTableOf(pack_web_nginx) = %q", got)
	}
	if got := e.srv.OsqueryTableOf("pack_vigil_socks"); got != "socket_events" {
		t.Errorf("OsqueryTableOf of a pack not served yet = %q", got)
	}
	log, _ := e.db.AuditLog(ctx, state.AuditFilter{Action: "config.update"})
	if len(log) != 1 || log[0].Actor != "alice" || log[0].Source != "198.51.100.4:999" || fmt.Sprint(log[0].Detail["version"]) != "1" {
		t.Errorf("audit %+v", log)
	}
}

func TestFleetConfigShards(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.srv.PutFleetConfig(ctx, "alice", FleetConfig{Packs: map[string]Pack{
		"canary": {Queries: map[string]osquery.ScheduledQuery{"q": {Query: "SELECT 1", Interval: 60}}, Shard: 25},
	}}, -1, ""); err != nil {
		t.Fatal(err)
	}
	in := 0
	for i := range 400 {
		h := vigil.Host{ID: state.NewID()}
		cfg, _, err := e.srv.EffectiveConfig(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		_, got := cfg.Packs["canary"]
		if want := shardOf(h.ID) < 25; got != want {
			t.Fatalf("host %d: in canary %v, shard %d", i, got, shardOf(h.ID))
		}
		// Stable: the same host gets the same answer.
		cfg2, _, _ := e.srv.EffectiveConfig(ctx, h)
		if _, again := cfg2.Packs["canary"]; again != got {
			t.Fatal("shard membership not stable")
		}
		if got {
			in++
		}
	}
	// 25% of 400 is 100; a hash that is not uniform at all would be far off.
	if in < 60 || in > 140 {
		t.Errorf("%d of 400 hosts in a 25%% shard", in)
	}
}
