package main

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"768MiB": 768 << 20, "2GiB": 2 << 30, "500MB": 500e6, "1048576": 1 << 20, "0": 0, "1.5GiB": 3 << 29} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "12XB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) gave no error", bad)
		}
	}
}
