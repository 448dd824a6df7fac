package table

import (
	"os"
	"strings"
	"testing"
)

func TestFixtureExtraTables(t *testing.T) {
	e := fixtureEngine(t)
	wantRows(t, e, "SELECT * FROM etc_protocols",
		row("name", "ip", "number", "0", "alias", "IP", "comment", "internet protocol, pseudo protocol number"),
		row("name", "icmp", "number", "1", "alias", "ICMP", "comment", "internet control message protocol # extra"),
		row("name", "tcp", "number", "6", "alias", "TCP", "comment", ""),
		row("name", "hopopt", "number", "0", "alias", "", "comment", ""),
	)
	wantRows(t, e, "SELECT * FROM process_namespaces ORDER BY pid",
		row("pid", "100", "cgroup_namespace", "4026531836", "ipc_namespace", "4026531833", "mnt_namespace", "4026531833",
			"net_namespace", "4026531840", "pid_namespace", "4026531833", "user_namespace", "4026531834", "uts_namespace", "4026531833"),
		row("pid", "200", "cgroup_namespace", "", "ipc_namespace", "", "mnt_namespace", "",
			"net_namespace", "4026531840", "pid_namespace", "", "user_namespace", "", "uts_namespace", ""),
	)
	wantRows(t, e, "SELECT name, oid, subsystem, current_value, config_value, type FROM system_controls",
		row("name", "kernel.arch", "oid", "", "subsystem", "kernel", "current_value", "x86_64", "config_value", "", "type", "string"),
		row("name", "kernel.hostname", "oid", "", "subsystem", "kernel", "current_value", "fixturehost", "config_value", "", "type", "string"),
		row("name", "kernel.randomize_va_space", "oid", "", "subsystem", "kernel", "current_value", "2", "config_value", "1", "type", "string"),
		row("name", "net.ipv4.ip_forward", "oid", "", "subsystem", "net", "current_value", "1", "config_value", "0", "type", "string"),
	)
	wantRows(t, e, "SELECT name, current_value FROM system_controls WHERE name = 'net.ipv4.ip_forward'",
		row("name", "net.ipv4.ip_forward", "current_value", "1"))
	wantRows(t, e, "SELECT name FROM system_controls WHERE subsystem = 'net'", row("name", "net.ipv4.ip_forward"))
	wantRows(t, e, "SELECT * FROM deb_package_files",
		row("package", "bash", "path", "/.", "admindir", "/var/lib/dpkg"),
		row("package", "bash", "path", "/bin", "admindir", "/var/lib/dpkg"),
		row("package", "bash", "path", "/bin/bash", "admindir", "/var/lib/dpkg"),
		row("package", "bash", "path", "/usr/share/doc/bash", "admindir", "/var/lib/dpkg"),
		row("package", "libc6", "path", "/.", "admindir", "/var/lib/dpkg"),
		row("package", "libc6", "path", "/lib/x86_64-linux-gnu/libc.so.6", "admindir", "/var/lib/dpkg"),
	)
	wantRows(t, e, "SELECT path FROM deb_package_files WHERE package = 'libc6' AND path LIKE '%.so%'",
		row("path", "/lib/x86_64-linux-gnu/libc.so.6"))
}

// TestUlimitInfo compares with what the kernel shows in /proc/self/limits.
func TestUlimitInfo(t *testing.T) {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Skipf("no /proc/self/limits: %v", err)
	}
	var soft, hard string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			soft, hard = f[0], f[1]
		}
	}
	e := openTest(t, Options{})
	wantRows(t, e, "SELECT soft_limit, hard_limit FROM ulimit_info WHERE type = 'nofile'", row("soft_limit", soft, "hard_limit", hard))
	res := query(t, e, "SELECT type FROM ulimit_info")
	if len(res.Rows) != len(rlimits) {
		t.Errorf("ulimit_info has %d rows, want %d", len(res.Rows), len(rlimits))
	}
}
