package agent

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]byte(`{
		"options": {"schedule_epoch": "7", "config_refresh": 30, "x": true},
		"schedule": {"a": {"query": "SELECT 1", "interval": "10", "removed": false, "snapshot": "true"}},
		"packs": {
			"internal_stuff": {"platform": "linux", "shard": "10", "discovery": ["SELECT 1"],
				"queries": {"active_directory": {"query": "SELECT 2", "interval": 1200}}},
			"ext": "ext.json"
		}
	}`), func(p string) ([]byte, error) {
		if p != "ext.json" {
			return nil, errors.New("unexpected " + p)
		}
		return []byte(`{"queries": {"q": {"query": "SELECT 3", "interval": 5}}}`), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Queries) != 3 {
		t.Fatalf("%d queries: %+v", len(c.Queries), c.Queries)
	}
	a, ext, ad := c.Queries[0], c.Queries[1], c.Queries[2]
	if a.Name != "a" || a.Interval != 10*time.Second || a.Removed || !a.Snapshot || !a.Denylist {
		t.Fatalf("a = %+v", a)
	}
	if ad.Name != "pack_internal_stuff_active_directory" || ad.Platform != "linux" || ad.Shard != 10 || len(ad.Discovery) != 1 || !ad.Removed {
		t.Fatalf("pack query = %+v", ad)
	}
	if ext.Name != "pack_ext_q" || ext.SQL != "SELECT 3" {
		t.Fatalf("external pack query = %+v", ext)
	}
	if n, ok := c.intOption("schedule_epoch"); !ok || n != 7 {
		t.Fatalf("schedule_epoch %d %v", n, ok)
	}
	if n, ok := c.intOption("config_refresh"); !ok || n != 30 {
		t.Fatalf("config_refresh %d %v", n, ok)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"schedule": {"a": {"query": "", "interval": 1}}}`, `"a" has no query`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": 0}}}`, `"a": interval 0`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": "ten"}}}`, `"ten" is not an integer`},
		{`{"packs": {"p": "/etc/p.json"}}`, `pack "p" refers to "/etc/p.json"`},
		{`{"packs": {"p": {"queries": {"q": {"query": "SELECT 1"}}}}}`, `"pack_p_q": interval 0`},
		{`{"schedule": `, `config:`},
	} {
		_, err := parseConfig([]byte(tc.in), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"schedule":{"a":{"query":"SELECT 1","interval":"10"}},"packs":{"p":{"queries":{"q":{"query":"x","interval":1}}}}}`))
	f.Add([]byte(`{"options":{"schedule_epoch":1},"decorators":{"load":["SELECT 1"]}}`))
	f.Add([]byte(`{"packs":{"p":"path"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b, func(string) ([]byte, error) { return nil, os.ErrNotExist })
		if err != nil {
			return
		}
		for _, q := range c.Queries {
			if q.Interval <= 0 || strings.TrimSpace(q.SQL) == "" {
				t.Fatalf("accepted bad query %+v", q)
			}
		}
	})
}
