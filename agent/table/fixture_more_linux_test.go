package table

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestFixtureProcessDetails(t *testing.T) {
	e := fixtureEngine(t)
	wantRows(t, e, "SELECT * FROM process_envs WHERE pid = 100",
		row("pid", "100", "key", "HOME", "value", "/home/alice"),
		row("pid", "100", "key", "PATH", "value", "/usr/bin:/bin"),
		row("pid", "100", "key", "EMPTY", "value", ""),
		row("pid", "100", "key", "WEIRD", "value", "a=b"),
	)
	wantRows(t, e, "SELECT * FROM process_memory_map WHERE pid = 100",
		row("pid", "100", "start", "0x55d0c6a00000", "end", "0x55d0c6a02000", "permissions", "r--p", "offset", "0", "device", "fd:01", "inode", "1048602", "path", "/usr/bin/sleep", "pseudo", "0"),
		row("pid", "100", "start", "0x55d0c6a02000", "end", "0x55d0c6a06000", "permissions", "r-xp", "offset", "8192", "device", "fd:01", "inode", "1048602", "path", "/usr/bin/sleep", "pseudo", "0"),
		row("pid", "100", "start", "0x55d0c7b5c000", "end", "0x55d0c7b7d000", "permissions", "rw-p", "offset", "0", "device", "00:00", "inode", "0", "path", "[heap]", "pseudo", "1"),
		row("pid", "100", "start", "0x7f1e2c000000", "end", "0x7f1e2c021000", "permissions", "rw-p", "offset", "0", "device", "00:00", "inode", "0", "path", "", "pseudo", "0"),
		row("pid", "100", "start", "0x7f1e2d000000", "end", "0x7f1e2d001000", "permissions", "r--p", "offset", "106496", "device", "fd:01", "inode", "2000", "path", "/opt/my app/lib.so", "pseudo", "0"),
	)
	wantRows(t, e, "SELECT * FROM process_open_files ORDER BY pid, fd",
		row("pid", "100", "fd", "0", "path", "/dev/null"),
		row("pid", "100", "fd", "3", "path", "socket:[5555]"),
		row("pid", "100", "fd", "4", "path", "socket:[8888]"),
	)
}

func TestFixtureAccounts(t *testing.T) {
	e := fixtureEngine(t)
	wantRows(t, e, "SELECT * FROM user_groups WHERE uid = 1000 ORDER BY gid",
		row("uid", "1000", "gid", "4"), row("uid", "1000", "gid", "1000"))
	wantRows(t, e, "SELECT uid FROM user_groups WHERE gid = 4", row("uid", "1000"))
	wantRows(t, e, "SELECT * FROM shadow",
		row("username", "root", "password_status", "active", "hash_alg", "y", "last_change", "19000", "min", "0", "max", "99999", "warning", "7", "inactive", "-1", "expire", "-1", "flag", "-1"),
		row("username", "alice", "password_status", "active", "hash_alg", "6", "last_change", "19500", "min", "1", "max", "90", "warning", "14", "inactive", "30", "expire", "20000", "flag", "-1"),
		row("username", "nobody", "password_status", "locked", "hash_alg", "", "last_change", "19000", "min", "0", "max", "99999", "warning", "7", "inactive", "-1", "expire", "-1", "flag", "-1"),
		row("username", "locked", "password_status", "locked", "hash_alg", "", "last_change", "19000", "min", "-1", "max", "-1", "warning", "-1", "inactive", "-1", "expire", "-1", "flag", "-1"),
		row("username", "newuser", "password_status", "not_set", "hash_alg", "", "last_change", "19000", "min", "-1", "max", "-1", "warning", "-1", "inactive", "-1", "expire", "-1", "flag", "-1"),
		row("username", "nopass", "password_status", "empty", "hash_alg", "", "last_change", "19000", "min", "-1", "max", "-1", "warning", "-1", "inactive", "-1", "expire", "-1", "flag", "-1"),
	)
	wantRows(t, e, "SELECT username FROM shadow WHERE username = 'alice'", row("username", "alice"))
	wantRows(t, e, "SELECT * FROM sudoers",
		row("source", "/etc/sudoers", "header", "Defaults", "rule_details", "env_reset"),
		row("source", "/etc/sudoers", "header", "Defaults", "rule_details", `secure_path="/usr/local/sbin:/usr/bin"`),
		row("source", "/etc/sudoers", "header", "root", "rule_details", "ALL=(ALL:ALL) ALL"),
		row("source", "/etc/sudoers", "header", "%sudo", "rule_details", "ALL=(ALL:ALL) ALL"),
		row("source", "/etc/sudoers", "header", "alice", "rule_details", "ALL=(ALL) NOPASSWD: /usr/bin/apt, /usr/bin/systemctl"),
		row("source", "/etc/sudoers", "header", "@includedir", "rule_details", "/etc/sudoers.d"),
		row("source", "/etc/sudoers.d/extra", "header", "bob", "rule_details", "ALL=(ALL) ALL"),
	)
}

func TestFixtureUserFiles(t *testing.T) {
	e := fixtureEngine(t)
	keys := "/home/alice/.ssh/authorized_keys"
	wantRows(t, e, "SELECT * FROM authorized_keys",
		row("uid", "1000", "algorithm", "ssh-ed25519", "key", "AAAAC3NzaC1lZDI1NTE5AAAAIFixture", "options", "", "comment", "alice@laptop", "key_file", keys),
		row("uid", "1000", "algorithm", "ssh-rsa", "key", "AAAAB3NzaC1yc2EAAAADAQABAAABAQFixture", "options", `from="10.0.0.0/8",no-pty`, "comment", "backup key", "key_file", keys),
		row("uid", "1000", "algorithm", "ecdsa-sha2-nistp256", "key", "AAAAE2VjZHNhFixture", "options", "", "comment", "", "key_file", keys),
	)
	wantRows(t, e, "SELECT key FROM known_hosts WHERE uid = 1000",
		row("key", "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"),
		row("key", "|1|hashed= ecdsa-sha2-nistp256 AAAAE2Vj"),
	)
	wantRows(t, e, "SELECT * FROM known_hosts WHERE uid = 0")
	bash, zsh := "/home/alice/.bash_history", "/home/alice/.zsh_history"
	wantRows(t, e, "SELECT * FROM shell_history",
		row("uid", "1000", "time", "1700000100", "command", "ls -la", "history_file", bash),
		row("uid", "1000", "time", "1700000200", "command", "cd /tmp", "history_file", bash),
		row("uid", "1000", "time", "0", "command", "plain command", "history_file", bash),
		row("uid", "1000", "time", "1700000300", "command", "git status", "history_file", zsh),
		row("uid", "1000", "time", "1700000400", "command", "make test", "history_file", zsh),
		row("uid", "1000", "time", "0", "command", "no timestamp", "history_file", zsh),
	)
	wantRows(t, e, "SELECT * FROM crontab",
		row("event", "", "minute", "17", "hour", "*", "day_of_month", "*", "month", "*", "day_of_week", "*", "command", "root cd / && run-parts --report /etc/cron.hourly", "path", "/etc/crontab"),
		row("event", "@reboot", "minute", "", "hour", "", "day_of_month", "", "month", "", "day_of_week", "", "command", "root /usr/local/bin/start.sh --now", "path", "/etc/crontab"),
		row("event", "", "minute", "*/5", "hour", "*", "day_of_month", "*", "month", "*", "day_of_week", "*", "command", "root /usr/bin/check", "path", "/etc/cron.d/check"),
		row("event", "", "minute", "0", "hour", "3", "day_of_month", "*", "month", "*", "day_of_week", "1", "command", "/home/alice/backup.sh", "path", "/var/spool/cron/crontabs/alice"),
	)
}

func TestFixtureSystem(t *testing.T) {
	e := fixtureEngine(t)
	wantRows(t, e, "SELECT * FROM kernel_modules",
		row("name", "nf_tables", "size", "348160", "used_by", "nft_chain_nat", "status", "Live", "address", "0xffffffffc0a1b000"),
		row("name", "ip_tables", "size", "36864", "used_by", "-", "status", "Live", "address", "0xffffffffc09f5000"),
	)
	wantRows(t, e, "SELECT * FROM deb_packages",
		row("name", "bash", "version", "5.2.15-2+b2", "source", "bash (5.2.15-2)", "size", "7164", "arch", "amd64", "revision", "2+b2", "status", "install ok installed", "maintainer", "Matthias Klose <doko@debian.org>", "section", "shells", "priority", "required", "admindir", "/var/lib/dpkg"),
		row("name", "oldpkg", "version", "1:2.0", "source", "", "size", "12", "arch", "all", "revision", "", "status", "deinstall ok config-files", "maintainer", "Someone <s@example.org>", "section", "misc", "priority", "optional", "admindir", "/var/lib/dpkg"),
	)
	wantRows(t, e, "SELECT * FROM memory_info", row(
		"memory_total", "2097152000", "memory_free", "524288000", "memory_available", "1048576000", "buffers", "10240000",
		"cached", "204800000", "swap_cached", "0", "active", "307200000", "inactive", "102400000", "swap_total", "1024000000", "swap_free", "921600000"))
	wantRows(t, e, "SELECT * FROM load_average",
		row("period", "1m", "average", "0.150000"), row("period", "5m", "average", "0.250000"), row("period", "15m", "average", "1.500000"))
	wantRows(t, e, "SELECT * FROM cpu_time",
		row("core", "0", "user", "100", "nice", "5", "system", "100", "idle", "2500", "iowait", "10", "irq", "0", "softirq", "3", "steal", "1", "guest", "0", "guest_nice", "0"),
		row("core", "1", "user", "200", "nice", "5", "system", "100", "idle", "2500", "iowait", "10", "irq", "0", "softirq", "2", "steal", "0", "guest", "0", "guest_nice", "0"),
	)
	wantRows(t, e, "SELECT device, device_alias, path, type, flags FROM mounts",
		row("device", "sysfs", "device_alias", "sysfs", "path", "/sys", "type", "sysfs", "flags", "rw,nosuid,nodev,noexec,relatime"),
		row("device", "/dev/sda1", "device_alias", "/dev/sda1", "path", "/mnt/my disk", "type", "ext4", "flags", "rw,relatime"),
	)
}

func TestFixtureNetworkFiles(t *testing.T) {
	e := fixtureEngine(t)
	wantRows(t, e, "SELECT * FROM arp_cache",
		row("address", "192.168.1.1", "mac", "52:54:00:12:34:56", "interface", "eth0", "permanent", "0"),
		row("address", "192.168.1.9", "mac", "52:54:00:aa:bb:cc", "interface", "eth0", "permanent", "1"),
	)
	opts := "1065665" // RES_INIT|RES_RECURSE|RES_DEFNAMES|RES_DNSRCH|RES_ROTATE|RES_USE_EDNS0
	wantRows(t, e, "SELECT * FROM dns_resolvers",
		row("id", "0", "type", "nameserver", "address", "10.0.0.2", "netmask", "32", "options", opts),
		row("id", "1", "type", "nameserver", "address", "fd00::53", "netmask", "128", "options", opts),
		row("id", "2", "type", "nameserver", "address", "10.0.0.3", "netmask", "32", "options", opts),
		row("id", "0", "type", "search", "address", "corp.example", "netmask", "", "options", opts),
		row("id", "1", "type", "search", "address", "example.org", "netmask", "", "options", opts),
	)
	wantRows(t, e, "SELECT * FROM etc_services",
		row("name", "tcpmux", "port", "1", "protocol", "tcp", "aliases", "", "comment", "TCP port service multiplexer"),
		row("name", "ssh", "port", "22", "protocol", "tcp", "aliases", "", "comment", ""),
		row("name", "http", "port", "80", "protocol", "tcp", "aliases", "www www-http", "comment", "World Wide Web"),
	)
}

func TestTimeTable(t *testing.T) {
	now := time.Date(2024, 2, 29, 23, 5, 9, 0, time.UTC)
	e := openTest(t, Options{Now: func() time.Time { return now }})
	wantRows(t, e, "SELECT weekday, year, month, day, hour, minutes, seconds, timezone, unix_time, timestamp, datetime, iso_8601 FROM time",
		row("weekday", "Thursday", "year", "2024", "month", "2", "day", "29", "hour", "23", "minutes", "5", "seconds", "9",
			"timezone", "UTC", "unix_time", "1709247909", "timestamp", "Thu Feb 29 23:05:09 2024 UTC",
			"datetime", "2024-02-29T23:05:09Z", "iso_8601", "2024-02-29T23:05:09Z"))
}

func TestOsqueryInfoAndSchedule(t *testing.T) {
	info := AgentInfo{
		Version: "9.9.9", ConfigHash: "abc", UUID: "U-1", InstanceID: "I-1", PID: 42, StartTime: 1700000000,
		ConfigValid: true, Schedule: []ScheduleInfo{{Name: "procs", Query: "SELECT 1", Interval: 60, Executions: 3, WallTimeMs: 2500, Output: 10}},
	}
	e := openTest(t, Options{Info: func() AgentInfo { return info }})
	wantRows(t, e, "SELECT pid, uuid, instance_id, version, config_hash, config_valid, extensions, start_time, watcher, platform_mask FROM osquery_info",
		row("pid", "42", "uuid", "U-1", "instance_id", "I-1", "version", "9.9.9", "config_hash", "abc", "config_valid", "1",
			"extensions", "inactive", "start_time", "1700000000", "watcher", "-1", "platform_mask", "9"))
	wantRows(t, e, "SELECT name, query, interval, executions, output_size, wall_time, wall_time_ms FROM osquery_schedule",
		row("name", "procs", "query", "SELECT 1", "interval", "60", "executions", "3", "output_size", "10", "wall_time", "2", "wall_time_ms", "2500"))
	// Without Info, version is the build's.
	e2 := openTest(t, Options{})
	res := query(t, e2, "SELECT version FROM osquery_info")
	if res.Rows[0]["version"] == "" {
		t.Error("osquery_info.version is empty")
	}
}

// utmpRecordBytes builds one glibc struct utmp record.
func utmpRecordBytes(typ int16, pid int32, line, user, host string, sec int32) []byte {
	b := make([]byte, utmpSize)
	binary.LittleEndian.PutUint16(b[0:], uint16(typ))
	binary.LittleEndian.PutUint32(b[4:], uint32(pid))
	copy(b[8:40], line)
	copy(b[44:76], user)
	copy(b[76:332], host)
	binary.LittleEndian.PutUint32(b[340:], uint32(sec))
	return b
}

func TestUtmpTables(t *testing.T) {
	root := t.TempDir()
	write := func(p string, recs ...[]byte) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		var all []byte
		for _, r := range recs {
			all = append(all, r...)
		}
		if err := os.WriteFile(full, all, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	boot := utmpRecordBytes(utBootTime, 0, "~", "reboot", "6.1.0", 1700000000)
	initp := utmpRecordBytes(utInitProcess, 1, "", "", "", 1700000001)
	login := utmpRecordBytes(utUserProcess, 4242, "pts/0", "alice", "10.0.0.9", 1700000100)
	dead := utmpRecordBytes(utDeadProcess, 4242, "pts/0", "", "", 1700000200)
	write("var/run/utmp", boot, initp, login)
	write("var/log/wtmp", boot, login, dead, []byte("trailing partial record"))
	e := openTest(t, Options{Root: root})
	wantRows(t, e, "SELECT * FROM logged_in_users",
		row("type", "boot_time", "user", "reboot", "tty", "~", "host", "6.1.0", "time", "1700000000", "pid", "0"),
		row("type", "user", "user", "alice", "tty", "pts/0", "host", "10.0.0.9", "time", "1700000100", "pid", "4242"),
	)
	wantRows(t, e, "SELECT * FROM last",
		row("username", "alice", "tty", "pts/0", "pid", "4242", "type", "7", "type_name", "user-process", "time", "1700000100", "host", "10.0.0.9"),
		row("username", "", "tty", "pts/0", "pid", "4242", "type", "8", "type_name", "dead-process", "time", "1700000200", "host", ""),
	)
}

func TestSuidBin(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin/sub", "etc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	mk := func(p string, mode os.FileMode) {
		full := filepath.Join(root, p)
		if err := os.WriteFile(full, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/bin/su", 0o755|os.ModeSetuid)
	mk("usr/bin/sub/wall", 0o755|os.ModeSetgid)
	mk("usr/bin/both", 0o755|os.ModeSetuid|os.ModeSetgid)
	mk("usr/bin/plain", 0o755)
	uid, gid := os.Getuid(), os.Getgid()
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("owner:x:"+itoa(uid)+":"+itoa(gid)+"::/:/bin/sh\n"), 0o644)
	e := openTest(t, Options{Root: root})
	g := itoa(gid) // no /etc/group: the number stands in
	wantRows(t, e, "SELECT * FROM suid_bin",
		row("path", "/bin/both", "username", "owner", "groupname", g, "permissions", "SG"),
		row("path", "/bin/su", "username", "owner", "groupname", g, "permissions", "S"),
		row("path", "/bin/sub/wall", "username", "owner", "groupname", g, "permissions", "G"),
		row("path", "/usr/bin/both", "username", "owner", "groupname", g, "permissions", "SG"),
		row("path", "/usr/bin/su", "username", "owner", "groupname", g, "permissions", "S"),
		row("path", "/usr/bin/sub/wall", "username", "owner", "groupname", g, "permissions", "G"),
	)
}

func itoa(n int) string { return strconv.Itoa(n) }
