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
	}`), "", func(p string) ([]byte, error) {
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
	packs := map[string]string{
		"bad.json":    `{"queries": {"q": {"query": "SELECT 1", "interval": true}}}`,
		"broken.json": "{\n  \"queries\": {,\n}",
	}
	readPack := func(p string) ([]byte, error) {
		if b, ok := packs[p]; ok {
			return []byte(b), nil
		}
		return nil, os.ErrNotExist
	}
	for _, tc := range []struct{ in, source, want string }{
		{`{"schedule": {"process_events": {"query": "SELECT 1", "interval": "ten"}}}`, "",
			`config: schedule.process_events.interval: "ten" is not an integer`},
		{`{"packs": {"foo": {"queries": {"bar": {"interval": 10}}}}}`, "",
			`config: packs.foo.queries.bar: missing "query"`},
		{`{"schedule": {"a": {"query": "", "interval": 1}}}`, "", `config: schedule.a.query: empty query`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": 0}}}`, "", `config: schedule.a.interval: 0 is not a positive number of seconds`},
		{`{"schedule": {"a": {"query": "SELECT 1"}}}`, "", `config: schedule.a: missing "interval"`},
		{`{"schedule": {"a.b c": {"query": 5, "interval": 1}}}`, "", `config: schedule["a.b c"].query: 5 is not a string`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": 1.5}}}`, "", `config: schedule.a.interval: 1.5 is not an integer`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": 1, "snapshot": "maybe"}}}`, "", `config: schedule.a.snapshot: "maybe" is not a boolean`},
		{`{"schedule": []}`, "", `config: schedule: want an object, got an array`},
		{`{"schedule": {"a": "SELECT 1"}}`, "", `config: schedule.a: want an object, got a string`},
		{`[1]`, "", `config: want an object, got an array`},
		{`{"options": {"config_refresh": "soon"}}`, "", `config: options.config_refresh: "soon" is not an integer`},
		{`{"options": []}`, "", `config: options: want an object, got an array`},
		{`{"file_paths": {"etc": "/etc/%%"}}`, "", `config: file_paths.etc: want an array of strings, got a string`},
		{`{"file_paths": {"etc": ["/etc/%%", 3]}}`, "", `config: file_paths.etc[1]: 3 is not a string`},
		{`{"decorators": {"load": "SELECT 1"}}`, "", `config: decorators.load: want an array of strings`},
		{`{"packs": {"p": {"shard": "x", "queries": {}}}}`, "", `config: packs.p.shard: "x" is not an integer`},
		{`{"packs": {"p": "/etc/p.json"}}`, "", `config: packs.p: refers to pack file "/etc/p.json"; only inline packs`},
		{"{\n  \"schedule\": {\n    \"a\": {\"query\": \"SELECT 1\" \"interval\": 1}\n  }\n}", "", `config: line 3 column 31: invalid character '"' after object key:value pair`},
		{`{"schedule": `, "", `config: line 1 column 14: unexpected end of JSON input`},
		{`{"schedule": {"a": {"query": "SELECT 1", "interval": "ten"}}}`, "/etc/osquery/osquery.conf",
			`config /etc/osquery/osquery.conf: schedule.a.interval: "ten" is not an integer`},
		{`{"packs": {"p": "bad.json"}}`, "/etc/o.conf",
			`config /etc/o.conf (packs.p from bad.json): queries.q.interval: true is not an integer`},
		{`{"packs": {"p": "broken.json"}}`, "/etc/o.conf",
			`config /etc/o.conf (packs.p from broken.json): line 2 column 15: invalid character ','`},
		{`{"packs": {"p": "missing.json"}}`, "/etc/o.conf", `config /etc/o.conf: packs.p: reading pack file: file does not exist`},
	} {
		rp := readPack
		if tc.source == "" {
			rp = nil
		}
		_, err := parseConfig([]byte(tc.in), tc.source, rp)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s:\n error %v\n  want %s", tc.in, err, tc.want)
		}
		var ce *ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: error %T is not a *ConfigError", tc.in, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"schedule":{"a":{"query":"SELECT 1","interval":"10"}},"packs":{"p":{"queries":{"q":{"query":"x","interval":1}}}}}`))
	f.Add([]byte(`{"options":{"schedule_epoch":1},"decorators":{"load":["SELECT 1"]}}`))
	f.Add([]byte(`{"packs":{"p":"path"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b, "f.conf", func(string) ([]byte, error) {
			return []byte(`{"queries":{"q":{"query":"SELECT 1","interval":"x"}}}`), nil
		})
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "config f.conf") {
				t.Fatalf("error without the config's name and path: %v", err)
			}
			return
		}
		for _, q := range c.Queries {
			if q.Interval <= 0 || strings.TrimSpace(q.SQL) == "" {
				t.Fatalf("accepted bad query %+v", q)
			}
		}
	})
}
