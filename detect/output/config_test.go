package output_test

import (
	"strings"
	"testing"

	"github.com/vigilhq/vigil/detect/output"
)

const goodConfig = `
retry: {attempts: 4, initial: 2s, max: 30s}
outputs:
  - name: soc
    type: webhook
    url: https://soc.example/hook
    secret_env: VIGIL_TEST_SECRET
    min_level: high
  - name: chat
    type: slack
    url: https://hooks.example/x
  - name: siem
    type: syslog
    address: siem.example:6514
    tls: true
  - name: mail
    type: email
    address: smtp.example:587
    from: vigil@example.com
    to: [soc@example.com]
    password: pw
    username: vigil
`

func TestParseConfig(t *testing.T) {
	c, err := output.ParseConfig("outputs.yml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Outputs) != 4 || c.Retry.Attempts != 4 || c.Retry.Initial.Seconds() != 2 || c.Outputs[2].TLS != true {
		t.Fatalf("config %+v", c)
	}
	t.Setenv("VIGIL_TEST_SECRET", "abc")
	opts, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range opts.Outputs {
		kinds = append(kinds, o.Name()+":"+o.Kind())
	}
	if strings.Join(kinds, ",") != "soc:webhook,chat:slack,siem:syslog,mail:email" || opts.Filters["soc"].MinLevel != "high" {
		t.Errorf("built %v %+v", kinds, opts.Filters)
	}
	t.Setenv("VIGIL_TEST_SECRET", "")
	if _, err := c.Build(); err == nil || !strings.Contains(err.Error(), "VIGIL_TEST_SECRET") {
		t.Errorf("missing secret: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"outputs:\n  - name: a\n    type: webhook\n    url: https://x/\n", "needs secret"},
		{"outputs:\n  - name: a\n    type: webhok\n", `type "webhok"`},
		{"outputs:\n  - type: slack\n    url: https://x/\n", "outputs[0]: name is required"},
		{"outputs:\n  - name: a\n    type: slack\n    url: ftp://x/\n", "must be an http(s) URL"},
		{"outputs:\n  - name: a\n    type: slack\n    url: https://x/\n  - name: a\n    type: slack\n    url: https://x/\n", "used twice"},
		{"outputs:\n  - name: a\n    type: syslog\n    address: nohost\n", "host:port"},
		{"outputs:\n  - name: a\n    type: email\n    address: h:25\n", "needs from and to"},
		{"outputs:\n  - name: a\n    type: slack\n    url: https://x/\n    min_level: severe\n", "min_level"},
		{"outputs:\n  - name: a\n    type: slack\n    urll: https://x/\n", "field urll not found"},
	} {
		_, err := output.ParseConfig("f.yml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "f.yml") {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
	if c, err := output.ParseConfig("empty.yml", nil); err != nil || len(c.Outputs) != 0 {
		t.Errorf("empty file: %+v %v", c, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("outputs: [{name: a, type: slack, url: 'http://x'}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := output.ParseConfig("fuzz.yml", data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, o := range c.Outputs {
			if o.Name == "" || seen[o.Name] {
				t.Fatalf("accepted config with bad names: %+v", c.Outputs)
			}
			seen[o.Name] = true
		}
	})
}
