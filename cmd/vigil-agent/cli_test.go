package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBufferedLogMaxFlag: --buffered_log_max=0 means unlimited, as in
// osquery's docs (cli-flags): the agent gets a negative bound (the spool's
// "unbounded"), not 0 (the spool's default of 1,000,000). A negative value
// is refused.
func TestBufferedLogMaxFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 1_000_000},
		{[]string{"--buffered_log_max=0"}, -1},
		{[]string{"--buffered_log_max=250"}, 250},
	} {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		if err := m.ParseFlags(append([]string{"--config_path=c.json"}, tc.args...)); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		opts, err := m.agentOptions()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if opts.BufferedLogMax != tc.want {
			t.Errorf("%v: BufferedLogMax %d, want %d", tc.args, opts.BufferedLogMax, tc.want)
		}
	}
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags([]string{"--config_path=c.json", "--buffered_log_max=-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.agentOptions(); err == nil || !strings.Contains(err.Error(), "--buffered_log_max=-2") {
		t.Errorf("--buffered_log_max=-2: err %v, want one naming the flag", err)
	}
}
