package table

import (
	"runtime"
	"sort"
	"testing"
)

// issue3Tables are the tables issue 3 names ("including at least"), event
// tables included.
var issue3Tables = []string{
	"processes", "process_open_sockets", "listening_ports", "process_open_files", "process_envs",
	"process_memory_map", "users", "groups", "user_groups", "logged_in_users", "last", "shadow",
	"sudoers", "system_info", "os_version", "uptime", "kernel_info", "kernel_modules", "deb_packages",
	"rpm_packages", "crontab", "authorized_keys", "known_hosts", "shell_history", "mounts",
	"interface_addresses", "interface_details", "routes", "arp_cache", "dns_resolvers", "etc_hosts",
	"etc_services", "file", "hash", "suid_bin", "systemd_units", "memory_info", "load_average",
	"cpu_time", "time", "osquery_info", "osquery_schedule",
	"process_events", "socket_events", "user_events", "file_events",
}

// issue2Tables are the first ten tables of issue 2.
var issue2Tables = []string{
	"processes", "users", "groups", "listening_ports", "system_info", "os_version", "uptime",
	"kernel_info", "etc_hosts", "osquery_info",
}

// minLinuxTables is issue 3's floor on osquery tables served on Linux.
const minLinuxTables = 45

// issueTables is the union of the issue lists, sorted.
func issueTables() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(append([]string(nil), issue3Tables...), issue2Tables...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// TestIssueTablesRegistered guards the registry against losing a table the
// issues promise, and the count the issue asks for. It needs no spec files.
func TestIssueTablesRegistered(t *testing.T) {
	skipUnlessLinux(t)
	if len(issue3Tables) != 46 {
		t.Fatalf("issue 3 names 42 tables plus 4 event tables; the list has %d", len(issue3Tables))
	}
	e := openTest(t, Options{})
	byName := map[string]Schema{}
	osqueryTables := 0
	for _, s := range e.Tables() {
		byName[s.Name] = s
		if !vigilOnlyTables[s.Name] {
			osqueryTables++
		}
	}
	for _, n := range issueTables() {
		s, ok := byName[n]
		if !ok {
			t.Errorf("table %s is not registered", n)
			continue
		}
		if vigilOnlyTables[n] {
			t.Errorf("table %s is marked Vigil-only, so the conformance test would skip it", n)
		}
		if len(s.Columns) == 0 {
			t.Errorf("table %s has no columns", n)
		}
	}
	for _, n := range []string{"process_events", "socket_events", "user_events", "file_events"} {
		if !byName[n].Event {
			t.Errorf("%s is not an event table", n)
		}
	}
	if osqueryTables < minLinuxTables {
		t.Errorf("%d osquery tables registered on Linux, the issue asks for at least %d", osqueryTables, minLinuxTables)
	}
}

// TestIssueTablesConform checks every table the issues name against its
// spec with the comparison TestConformance uses, and that at least
// minLinuxTables registered tables conform.
func TestIssueTablesConform(t *testing.T) {
	skipUnlessLinux(t)
	specs := loadSpecs(t)
	e := openTest(t, Options{})
	byName := map[string]Schema{}
	conformant := 0
	for _, s := range e.Tables() {
		byName[s.Name] = s
		if spec, ok := specs[s.Name]; ok && !vigilOnlyTables[s.Name] && len(specDiffs(spec, s)) == 0 {
			conformant++
		}
	}
	for _, n := range issueTables() {
		spec, ok := specs[n]
		if !ok {
			t.Errorf("no Linux spec for %s under the osquery specs", n)
			continue
		}
		s, ok := byName[n]
		if !ok {
			t.Errorf("table %s is not registered", n)
			continue
		}
		for _, d := range specDiffs(spec, s) {
			t.Errorf("%s: %s", n, d)
		}
	}
	if conformant < minLinuxTables {
		t.Errorf("%d registered tables match their spec, the issue asks for at least %d", conformant, minLinuxTables)
	}
}

// TestSpecDiffsDetects makes sure the comparison can fail: every kind of
// difference in a copy of a real schema is reported.
func TestSpecDiffsDetects(t *testing.T) {
	specs := loadSpecs(t)
	spec, ok := specs["users"]
	if !ok {
		t.Fatal("no spec for users")
	}
	var base Schema
	for _, s := range openTest(t, Options{}).Tables() {
		if s.Name == "users" {
			base = s
		}
	}
	if d := specDiffs(spec, base); len(d) != 0 {
		t.Fatalf("users differs from its spec: %v", d)
	}
	mutate := func(f func(s *Schema)) Schema {
		s := base
		s.Columns = append([]Column(nil), base.Columns...)
		f(&s)
		return s
	}
	for name, s := range map[string]Schema{
		"type":     mutate(func(s *Schema) { s.Columns[0].Type = TypeText }),
		"rename":   mutate(func(s *Schema) { s.Columns[1].Name = "nom" }),
		"missing":  mutate(func(s *Schema) { s.Columns = s.Columns[:len(s.Columns)-1] }),
		"extra":    mutate(func(s *Schema) { s.Columns = append(s.Columns, Column{Name: "x", Type: TypeText}) }),
		"order":    mutate(func(s *Schema) { s.Columns[0], s.Columns[1] = s.Columns[1], s.Columns[0] }),
		"hidden":   mutate(func(s *Schema) { s.Columns[2].Hidden = !s.Columns[2].Hidden }),
		"required": mutate(func(s *Schema) { s.Columns[2].Required = true }),
		"collate":  mutate(func(s *Schema) { s.Columns[1].Collate = "nocase" }),
		"event":    mutate(func(s *Schema) { s.Event = true }),
	} {
		if d := specDiffs(spec, s); len(d) == 0 {
			t.Errorf("%s change not detected", name)
		}
	}
}

// skipUnlessLinux skips a test of the Linux registry on other platforms,
// which register only the portable tables.
func skipUnlessLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the issue's table list is for Linux; this is %s", runtime.GOOS)
	}
}
