package table

import (
	"context"
	"crypto/sha256"
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
// the reason holds only while the source is absent or empty.
func liveMayBeEmpty(table string) string {
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
	case "last":
		if missing("/var/log/wtmp") {
			return "/var/log/wtmp is absent or empty: nobody logged in"
		}
		return "/var/log/wtmp may hold only boot/runlevel records, which last leaves out"
	case "logged_in_users":
		if missing("/var/run/utmp") {
			return "/var/run/utmp is absent or empty: no login sessions"
		}
		return "utmp may hold no session records"
	case "systemd_units":
		if missing("/run/dbus/system_bus_socket") {
			return "no system D-Bus socket (systemd is not PID 1 in this container)"
		}
	case "authorized_keys", "known_hosts":
		if !anyHomeHas(".ssh") {
			return "no user home has a .ssh directory"
		}
		return "the users' .ssh directories hold no such file"
	case "shell_history":
		if !anyHomeHas(".bash_history", ".zsh_history", ".sh_history", ".history") {
			return "no user home has a shell history file"
		}
		return "the history files found may be empty"
	}
	return ""
}

// anyHomeHas reports whether any home directory in /etc/passwd holds one of
// the names.
func anyHomeHas(names ...string) bool {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 6 || f[5] == "" {
			continue
		}
		for _, n := range names {
			if _, err := os.Lstat(filepath.Join(f[5], n)); err == nil {
				return true
			}
		}
	}
	return false
}
