package table

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLiveEveryTable runs SELECT * on every registered table on this
// machine (file and hash with a path constraint) and checks that no query
// fails, that SELECT * returns exactly the table's visible columns in
// schema order, that every column (hidden ones included) can be selected
// by name, that values render as their declared type, and that every table
// has rows unless liveMayBeEmpty explains why this machine has none. The
// event tables, osquery_events, osquery_schedule and vigil_event_drops are
// fed by fakes (no agent runs here) so that they have rows too.
//
// On the Debian 12 container this was written on, these tables have no rows
// for the reasons liveMayBeEmpty gives: kernel_modules, sudoers,
// rpm_packages, last, logged_in_users, systemd_units, authorized_keys,
// known_hosts, shell_history.
func TestLiveEveryTable(t *testing.T) {
	hostname, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Skipf("no /etc/hostname to point file and hash at: %v", err)
	}
	ev := &fakeEvents{}
	e := openTest(t, Options{
		Events: ev,
		Info: func() AgentInfo {
			return AgentInfo{Version: "test", PID: os.Getpid(), Watcher: -1, ConfigValid: true,
				Schedule: []ScheduleInfo{{Name: "procs", Query: "SELECT * FROM processes", Interval: 60, Executions: 1}}}
		},
		EventStats: func() []EventStat {
			return []EventStat{
				{Name: "audit", Type: "publisher", Subscriptions: 2, Active: true, Events: 5},
				{Name: "process_events", Publisher: "audit", Type: "subscriber", Subscriptions: 1, Active: true, Events: 5},
			}
		},
	})
	tables := e.Tables()
	for _, s := range tables {
		if s.Event {
			ev.add(s.Name, map[string]string{"time": "1700000000", "eid": "1"})
		}
	}
	constraint := map[string]string{
		"file": "path = '/etc/hostname'",
		"hash": "path = '/etc/hostname'",
	}
	ran := 0
	for _, s := range tables {
		t.Run(s.Name, func(t *testing.T) {
			where := ""
			if hasRequired(s) {
				c, ok := constraint[s.Name]
				if !ok {
					t.Fatalf("%s requires a constraint and the test has none for it", s.Name)
				}
				where = " WHERE " + c
			}
			var visible, all []string
			for _, c := range s.Columns {
				all = append(all, c.Name)
				if !c.Hidden {
					visible = append(visible, c.Name)
				}
			}
			start := time.Now()
			res, err := e.Query(context.Background(), `SELECT * FROM "`+s.Name+`"`+where)
			if err != nil {
				t.Fatalf("SELECT *: %v", err)
			}
			t.Logf("%d rows in %v", len(res.Rows), time.Since(start).Round(time.Millisecond))
			if strings.Join(res.Columns, ",") != strings.Join(visible, ",") {
				t.Errorf("SELECT * columns\n got: %v\nwant: %v", res.Columns, visible)
			}
			checkTypes(t, s, res)
			if len(res.Rows) == 0 {
				if why := liveMayBeEmpty(s.Name); why != "" {
					t.Logf("no rows here: %s", why)
				} else {
					t.Errorf("no rows, and nothing on this machine explains it")
				}
			}
			res, err = e.Query(context.Background(), `SELECT "`+strings.Join(all, `", "`)+`" FROM "`+s.Name+`"`+where+" LIMIT 5")
			if err != nil {
				t.Fatalf("selecting every column by name: %v", err)
			}
			if strings.Join(res.Columns, ",") != strings.Join(all, ",") {
				t.Errorf("columns by name\n got: %v\nwant: %v", res.Columns, all)
			}
			checkTypes(t, s, res)
			ran++
		})
	}
	if ran != len(tables) {
		t.Errorf("%d of %d tables ran", ran, len(tables))
	}
	// The constrained tables answered about the file they were pointed at.
	sum := sha256.Sum256(hostname)
	wantRows(t, e, "SELECT path, directory, sha256 FROM hash WHERE path = '/etc/hostname'",
		row("path", "/etc/hostname", "directory", "/etc", "sha256", hex.EncodeToString(sum[:])))
	wantRows(t, e, "SELECT path, size, type FROM file WHERE path = '/etc/hostname'",
		row("path", "/etc/hostname", "size", strconv.Itoa(len(hostname)), "type", "regular"))
}

// checkTypes checks that every value renders as its column's type: NULL
// ("") or a number that parses for the numeric types.
func checkTypes(t *testing.T, s Schema, res Result) {
	t.Helper()
	types := map[string]string{}
	for _, c := range s.Columns {
		types[c.Name] = c.Type
	}
	for i, r := range res.Rows {
		if len(r) != len(res.Columns) {
			t.Fatalf("row %d has %d values for %d columns", i, len(r), len(res.Columns))
		}
		for _, c := range res.Columns {
			v := r[c]
			if v == "" {
				continue
			}
			var err error
			switch types[c] {
			case TypeInteger, TypeBigint, TypeUnsignedBigint:
				_, err = strconv.ParseInt(v, 10, 64)
			case TypeDouble:
				_, err = strconv.ParseFloat(v, 64)
			}
			if err != nil {
				t.Errorf("row %d: %s (%s) = %q", i, c, types[c], v)
				return
			}
		}
	}
}

// liveMayBeEmpty says why a table legitimately has no rows on this machine,
// or "" when it must have rows. Where the table's source can be checked,
// the reason holds only while the source is absent or holds nothing the
// table reports, so that a broken parser cannot hide behind it.
func liveMayBeEmpty(table string) string { return hostSources.mayBeEmpty(table) }

// liveSources are the files behind the tables whose emptiness the test
// checks by reading them itself; a variable so that the check can be
// tested on fixtures.
type liveSources struct {
	passwd, wtmp, utmp string
}

var hostSources = liveSources{passwd: "/etc/passwd", wtmp: "/var/log/wtmp", utmp: "/var/run/utmp"}

func (src liveSources) mayBeEmpty(table string) string {
	missing := func(p string) bool {
		fi, err := os.Stat(p)
		return err != nil || fi.Size() == 0
	}
	switch table {
	case "kernel_modules":
		if missing("/proc/modules") {
			return "/proc/modules is absent or empty (container without module access)"
		}
	case "sudoers":
		if missing("/etc/sudoers") {
			return "/etc/sudoers does not exist (sudo not installed)"
		}
	case "rpm_packages":
		if missing("/var/lib/rpm/rpmdb.sqlite") {
			return "no rpm database (/var/lib/rpm/rpmdb.sqlite) on this Debian host"
		}
	case "systemd_units":
		if missing("/run/dbus/system_bus_socket") {
			return "no system D-Bus socket (systemd is not PID 1 in this container)"
		}
	case "last":
		// last reports the USER_PROCESS (7) and DEAD_PROCESS (8) records.
		if n := countUtmp(src.wtmp, func(typ int16, _ int32) bool { return typ == 7 || typ == 8 }); n == 0 {
			return src.wtmp + " holds no login or logout record (type 7 or 8)"
		}
	case "logged_in_users":
		// logged_in_users reports every record but those of pid 1.
		if n := countUtmp(src.utmp, func(_ int16, pid int32) bool { return pid != 1 }); n == 0 {
			return src.utmp + " is absent or holds only records of pid 1: no login sessions"
		}
	case "authorized_keys":
		if !src.anyHomeFile(hasContentLine, ".ssh/authorized_keys", ".ssh/authorized_keys2") {
			return "no user home has an .ssh/authorized_keys{,2} with a key line"
		}
	case "known_hosts":
		if !src.anyHomeFile(hasContentLine, ".ssh/known_hosts") {
			return "no user home has an .ssh/known_hosts with a host line"
		}
	case "shell_history":
		nonEmpty := func(b []byte) bool { return len(bytes.TrimSpace(b)) > 0 }
		if !src.anyHomeFile(nonEmpty, append(append([]string{}, shellHistoryFiles...), ".bash_sessions/*.history")...) {
			return "no user home has a non-empty shell history file"
		}
	}
	return ""
}

// countUtmp counts the utmp records (384 bytes: type int16 at 0, pid int32
// at 4) of file for which keep holds. It reads the file itself rather
// than through the parser under test.
func countUtmp(file string, keep func(typ int16, pid int32) bool) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n := 0
	for ; len(b) >= 384; b = b[384:] {
		if keep(int16(binary.LittleEndian.Uint16(b[0:])), int32(binary.LittleEndian.Uint32(b[4:]))) {
			n++
		}
	}
	return n
}

// hasContentLine reports whether b has a line that is neither blank nor a
// '#' comment.
func hasContentLine(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			return true
		}
	}
	return false
}

// anyHomeFile reports whether any home directory in the passwd file holds
// one of the files (glob patterns relative to the home) with content ok.
func (src liveSources) anyHomeFile(ok func([]byte) bool, names ...string) bool {
	b, err := os.ReadFile(src.passwd)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 6 || f[5] == "" {
			continue
		}
		for _, n := range names {
			files, _ := filepath.Glob(filepath.Join(f[5], n))
			for _, file := range files {
				if c, err := os.ReadFile(file); err == nil && ok(c) {
					return true
				}
			}
		}
	}
	return false
}

// TestLiveMayBeEmptyChecksSources: the excuses for an empty table hold only
// while the source has nothing the table would report; with content in
// it, the table must have rows.
func TestLiveMayBeEmptyChecksSources(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	src := liveSources{passwd: filepath.Join(dir, "passwd"), wtmp: filepath.Join(dir, "wtmp"), utmp: filepath.Join(dir, "utmp")}
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	record := func(typ int16, pid int32) string {
		r := make([]byte, 384)
		binary.LittleEndian.PutUint16(r[0:], uint16(typ))
		binary.LittleEndian.PutUint32(r[4:], uint32(pid))
		return string(r)
	}
	write(src.passwd, "root:x:0:0:root:"+home+":/bin/sh\nnohome:x:1:1::/nonexistent:/bin/false\n")
	tables := []string{"last", "logged_in_users", "authorized_keys", "known_hosts", "shell_history"}
	check := func(stage string, wantExcuse map[string]bool) {
		t.Helper()
		for _, table := range tables {
			why := src.mayBeEmpty(table)
			if (why != "") != wantExcuse[table] {
				t.Errorf("%s: %s: excuse %q, want one: %v", stage, table, why, wantExcuse[table])
			}
		}
	}
	all := map[string]bool{"last": true, "logged_in_users": true, "authorized_keys": true, "known_hosts": true, "shell_history": true}
	check("no sources", all)

	// Sources that exist but hold nothing the tables report.
	write(src.wtmp, record(2, 0)+record(1, 0)) // boot and run level
	write(src.utmp, record(2, 1)+record(1, 1)) // of pid 1
	write(filepath.Join(home, ".ssh/authorized_keys"), "# no keys\n\n")
	write(filepath.Join(home, ".ssh/known_hosts"), "\n")
	write(filepath.Join(home, ".bash_history"), "")
	check("empty sources", all)

	write(src.wtmp, record(2, 0)+record(7, 4321))
	write(src.utmp, record(1, 1)+record(7, 4321))
	write(filepath.Join(home, ".ssh/authorized_keys2"), "ssh-ed25519 AAAA user@host\n")
	write(filepath.Join(home, ".ssh/known_hosts"), "host ssh-ed25519 AAAA\n")
	write(filepath.Join(home, ".bash_sessions/abc.history"), "ls\n")
	check("sources with content", map[string]bool{})
}
