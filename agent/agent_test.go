package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/agent/agenttest"
	"github.com/vigilhq/vigil/agent/event"
	"github.com/vigilhq/vigil/osquery"
)

const secret = "s3cret-enroll"

// fixtureRoot builds a filesystem root for the tables: a hostname and an
// /etc/passwd with the given users.
func fixtureRoot(t *testing.T, users ...string) string {
	t.Helper()
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "proc/sys/kernel"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "proc/sys/kernel/hostname"), []byte("testhost\n"), 0o644))
	setUsers(t, root, users...)
	return root
}

func setUsers(t *testing.T, root string, users ...string) {
	t.Helper()
	var sb strings.Builder
	for i, u := range users {
		sb.WriteString(u + ":x:" + itoa(1000+i) + ":" + itoa(1000+i) + "::/home/" + u + ":/bin/sh\n")
	}
	p := filepath.Join(root, "etc/passwd")
	must(t, os.WriteFile(p+".new", []byte(sb.String()), 0o644))
	must(t, os.Rename(p+".new", p))
}

func itoa(i int) string { return strconv.Itoa(i) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type running struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err set
	err    error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run returned %v", r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop within 15 s")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// start runs an agent against srv until the test ends.
func start(t *testing.T, srv *agenttest.Server, dataDir, root string, mod func(*Options)) *running {
	t.Helper()
	opts := Options{
		ServerURL:           srv.URL,
		RootCAs:             srv.CertPool(),
		EnrollSecret:        secret,
		DataDir:             dataDir,
		Root:                root,
		LoggerTLSPeriod:     100 * time.Millisecond,
		DistributedInterval: 200 * time.Millisecond,
		ConfigRefresh:       200 * time.Millisecond,
		Logger:              testLogger(t),
	}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = a.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
		}
	})
	return r
}

func schedule(queries map[string]map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"schedule": queries})
	return b
}

// linesOf returns the result lines of one query name.
func linesOf(srv *agenttest.Server, name string) []osquery.ResultLine {
	var out []osquery.ResultLine
	for _, l := range srv.Results() {
		if l.Name == name {
			out = append(out, l)
		}
	}
	return out
}

func describe(ls []osquery.ResultLine) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Action+":"+l.Columns["username"]+":"+itoa(int(l.Counter)))
	}
	sort.Strings(out)
	return out
}

func TestEnrollmentAndNodeKeyReuse(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"u": {"query": "SELECT username FROM users", "interval": 1}}))
	dir := t.TempDir()
	root := fixtureRoot(t, "alice")
	r := start(t, srv, dir, root, func(o *Options) { o.LongPoll = true; o.LongPollWait = 500 * time.Millisecond })
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "u")) == 1 }) {
		t.Fatal("no result line after enrollment")
	}
	r.stop(t)

	en := srv.Enrolls()
	if len(en) != 1 {
		t.Fatalf("%d enrollments, want 1", len(en))
	}
	e := en[0]
	if e.EnrollSecret != secret || e.HostIdentifier != "testhost" {
		t.Fatalf("enroll secret %q host %q", e.EnrollSecret, e.HostIdentifier)
	}
	for _, k := range []string{"os_version", "osquery_info", "system_info"} {
		if len(e.HostDetails[k]) == 0 {
			t.Errorf("host_details[%s] empty", k)
		}
	}
	if v := e.HostDetails["vigil"]; v["capability"] != "2" || v["long_poll"] != "true" {
		t.Errorf("host_details[vigil] = %v", v)
	}
	st, err := os.Stat(filepath.Join(dir, nodeKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node key file: %v %v", st, err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, nodeKeyFile))
	auth := srv.AuthHeaders()
	if len(auth) == 0 || auth[0] != "NodeKey "+strings.TrimSpace(string(key)) {
		t.Fatalf("Authorization header %q", auth)
	}

	// Restart on the same data dir: the node key is reused.
	r = start(t, srv, dir, root, nil)
	n0 := len(srv.Reads())
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Reads()) > n0 }) {
		t.Fatal("restarted agent never polled")
	}
	r.stop(t)
	if n := len(srv.Enrolls()); n != 1 {
		t.Fatalf("restart enrolled again: %d enrollments", n)
	}
}

func TestWrongSecretKeepsRetrying(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	r := start(t, srv, t.TempDir(), fixtureRoot(t), func(o *Options) { o.EnrollSecret = "wrong" })
	if !srv.WaitFor(5*time.Second, func() bool { return len(srv.Enrolls()) >= 2 }) {
		t.Fatal("agent did not retry enrollment")
	}
	r.stop(t)
	if srv.NodeKeys() != 0 {
		t.Fatal("a node key was issued for a wrong secret")
	}
}

func TestNodeInvalidReenrolls(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	dir := t.TempDir()
	r := start(t, srv, dir, fixtureRoot(t, "alice"), nil)
	if !srv.WaitFor(10*time.Second, func() bool { return srv.NodeKeys() == 1 }) {
		t.Fatal("no enrollment")
	}
	key1, _ := os.ReadFile(filepath.Join(dir, nodeKeyFile))
	srv.RevokeNodeKeys()
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Enrolls()) == 2 && srv.NodeKeys() == 1 }) {
		t.Fatalf("no re-enrollment after node_invalid: %d enrolls", len(srv.Enrolls()))
	}
	// The agent keeps working with the new key.
	srv.AddQuery("after", "SELECT 1 AS one", "")
	if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
		t.Fatal("no distributed answer after re-enrollment")
	}
	r.stop(t)
	key2, _ := os.ReadFile(filepath.Join(dir, nodeKeyFile))
	if string(key1) == string(key2) {
		t.Fatal("node key file not replaced")
	}
}

func TestDifferentialResultsAcrossRuns(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{
		"users":      {"query": "SELECT username FROM users", "interval": 1},
		"users_keep": {"query": "SELECT username FROM users", "interval": 1, "removed": false},
	}))
	dir := t.TempDir()
	root := fixtureRoot(t, "alice", "bob")
	r := start(t, srv, dir, root, nil)
	want := []string{"added:alice:0", "added:bob:0"}
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "users")) == 2 }) {
		t.Fatalf("first run: %v", describe(linesOf(srv, "users")))
	}
	if got := describe(linesOf(srv, "users")); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("first run lines %v, want %v", got, want)
	}
	l := linesOf(srv, "users")[0]
	if l.HostIdentifier != "testhost" || l.Epoch != 0 || l.Numerics || l.CalendarTime == "" || l.UnixTime == 0 {
		t.Fatalf("line header %+v", l)
	}

	setUsers(t, root, "alice", "carol")
	want = append(want, "added:carol:1", "removed:bob:1")
	sort.Strings(want)
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "users")) == 4 }) {
		t.Fatalf("second run: %v", describe(linesOf(srv, "users")))
	}
	if got := describe(linesOf(srv, "users")); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("lines %v, want %v", got, want)
	}
	// removed:false logs only the addition.
	if !srv.WaitFor(5*time.Second, func() bool { return len(linesOf(srv, "users_keep")) == 3 }) {
		t.Fatalf("users_keep: %v", describe(linesOf(srv, "users_keep")))
	}
	for _, l := range linesOf(srv, "users_keep") {
		if l.Action == osquery.ActionRemoved {
			t.Fatal("removed line logged for removed:false")
		}
	}
	r.stop(t)

	// A restart does not log the unchanged rows again.
	r = start(t, srv, dir, root, nil)
	time.Sleep(2500 * time.Millisecond)
	if n := len(linesOf(srv, "users")); n != 4 {
		t.Fatalf("restart re-emitted: %d lines: %v", n, describe(linesOf(srv, "users")))
	}
	setUsers(t, root, "carol")
	want = append(want, "removed:alice:2")
	sort.Strings(want)
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "users")) == 5 }) {
		t.Fatalf("after restart: %v", describe(linesOf(srv, "users")))
	}
	if got := describe(linesOf(srv, "users")); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("lines %v, want %v", got, want)
	}
	r.stop(t)
}

func TestSnapshotQuery(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"snap": {"query": "SELECT username FROM users", "interval": 1, "snapshot": true}}))
	r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice", "bob"), nil)
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "snap")) >= 2 }) {
		t.Fatal("no snapshot lines")
	}
	r.stop(t)
	ls := linesOf(srv, "snap")
	for i, l := range ls[:2] {
		if l.Action != osquery.ActionSnapshot || len(l.Snapshot) != 2 || l.Columns != nil {
			t.Fatalf("snapshot line %+v", l)
		}
		if int(l.Counter) != i {
			t.Fatalf("snapshot %d counter %d", i, l.Counter)
		}
	}
	var raw map[string]any
	json.Unmarshal(srv.RawResults()[0], &raw)
	if _, ok := raw["snapshot"]; !ok {
		t.Fatalf("raw snapshot line lacks \"snapshot\": %v", raw)
	}
}

func TestEventQueryEmitsEachRowOnce(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{
		"procs":  {"query": "SELECT pid, cmdline FROM process_events", "interval": 1},
		"procs2": {"query": "SELECT pid FROM process_events WHERE pid > 0", "interval": 1},
	}))
	buf := event.NewBuffer(event.BufferOptions{})
	r := start(t, srv, t.TempDir(), fixtureRoot(t), func(o *Options) { o.EventBuffer = buf })
	for _, p := range []string{"11", "12", "13"} {
		buf.Add("process_events", map[string]string{"pid": p, "cmdline": "/bin/x " + p})
	}
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "procs")) == 3 }) {
		t.Fatalf("first events: %d lines", len(linesOf(srv, "procs")))
	}
	buf.Add("process_events", map[string]string{"pid": "14", "cmdline": "/bin/x 14"})
	buf.Add("process_events", map[string]string{"pid": "15", "cmdline": "/bin/x 15"})
	if !srv.WaitFor(10*time.Second, func() bool { return len(linesOf(srv, "procs")) == 5 && len(linesOf(srv, "procs2")) == 5 }) {
		t.Fatalf("second events: %d / %d lines", len(linesOf(srv, "procs")), len(linesOf(srv, "procs2")))
	}
	time.Sleep(2500 * time.Millisecond) // more runs must not repeat rows
	r.stop(t)
	seen := map[string]int{}
	for _, l := range linesOf(srv, "procs") {
		if l.Action != osquery.ActionAdded {
			t.Fatalf("event line action %q", l.Action)
		}
		seen[l.Columns["pid"]]++
		want := int64(1)
		if l.Columns["pid"] >= "14" {
			want = 2
		}
		if int64(l.Counter) != want {
			t.Errorf("pid %s counter %d, want %d", l.Columns["pid"], l.Counter, want)
		}
	}
	for _, p := range []string{"11", "12", "13", "14", "15"} {
		if seen[p] != 1 {
			t.Errorf("pid %s logged %d times", p, seen[p])
		}
	}
	if n := len(linesOf(srv, "procs2")); n != 5 {
		t.Errorf("second consumer got %d lines, want 5 (each consumer sees each row once)", n)
	}
}

func TestDistributedQueries(t *testing.T) {
	for _, longPoll := range []bool{false, true} {
		name := "interval"
		if longPoll {
			name = "long_poll"
		}
		t.Run(name, func(t *testing.T) {
			srv := agenttest.NewServer(secret)
			defer srv.Close()
			r := start(t, srv, t.TempDir(), fixtureRoot(t, "alice", "bob"), func(o *Options) {
				o.LongPoll = longPoll
				o.LongPollWait = 2 * time.Second
				if longPoll {
					o.DistributedInterval = time.Hour   // only the long poll can answer quickly
					o.LoggerTLSPeriod = 3 * time.Second // holds last LongPollWait
				}
			})
			if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Reads()) > 0 }) {
				t.Fatal("no distributed read")
			}
			time.Sleep(100 * time.Millisecond)
			srv.AddQuery("ok", "SELECT username FROM users WHERE username = 'alice'", "")
			srv.AddQuery("bad", "SELECT * FROM no_such_table", "")
			srv.AddQuery("skipped", "SELECT 1", "SELECT 1 WHERE 0")
			srv.AddQuery("discovered", "SELECT 2 AS two", "SELECT 1")
			srv.AddQuery("ordered", "SELECT 2 AS b, 1 AS a, 3 AS c", "")
			added := time.Now()
			if !srv.WaitFor(10*time.Second, func() bool { return len(srv.Writes()) == 1 }) {
				t.Fatal("no distributed write")
			}
			latency := time.Since(added)
			r.stop(t)
			w := srv.Writes()[0]
			if rows := w.Queries["ok"]; len(rows) != 1 || rows[0]["username"] != "alice" || w.Statuses["ok"] != 0 {
				t.Errorf("ok: rows %v status %d", rows, w.Statuses["ok"])
			}
			if w.Statuses["bad"] != 1 || !strings.Contains(w.Messages["bad"], "no such table") {
				t.Errorf("bad: status %d message %q", w.Statuses["bad"], w.Messages["bad"])
			}
			if _, ok := w.Queries["skipped"]; ok {
				t.Errorf("query with an empty discovery result was answered")
			}
			if rows := w.Queries["discovered"]; len(rows) != 1 || rows[0]["two"] != "2" {
				t.Errorf("discovered: %v", rows)
			}
			// The server decodes the write as sent: the row's keys in the
			// SELECT's order, not sorted.
			if cols := w.Columns["ordered"]; !slices.Equal(cols, []string{"b", "a", "c"}) {
				t.Errorf("ordered: columns arrived as %v, want [b a c]", cols)
			}
			if longPoll {
				if w := srv.Reads()[0].VigilWait; w < 1500 || w > 2000 {
					t.Errorf("vigil_wait_ms = %d, want LongPollWait (2000) less at most a quarter", w)
				}
				t.Logf("long poll: query answered %v after it was queued", latency)
				if latency > 5*time.Second {
					t.Errorf("long poll answered after %v", latency)
				}
			}
		})
	}
}

func TestLogRetryOn503WithoutLoss(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"users": {"query": "SELECT username FROM users", "interval": 1}}))
	srv.Fail503(3)
	users := []string{}
	for i := 0; i < 50; i++ {
		users = append(users, "user"+itoa(i))
	}
	r := start(t, srv, t.TempDir(), fixtureRoot(t, users...), nil)
	if !srv.WaitFor(20*time.Second, func() bool { return len(linesOf(srv, "users")) >= 50 }) {
		t.Fatalf("got %d lines after 503s", len(linesOf(srv, "users")))
	}
	time.Sleep(500 * time.Millisecond)
	r.stop(t)
	seen := map[string]int{}
	for _, l := range linesOf(srv, "users") {
		seen[l.Columns["username"]]++
	}
	for _, u := range users {
		if seen[u] != 1 {
			t.Errorf("%s delivered %d times", u, seen[u])
		}
	}
	if p := srv.LogPosts(); p < 4 {
		t.Errorf("%d log posts, want at least 3 refused + 1", p)
	}
}

func TestStatusLogsAndFailedQuery(t *testing.T) {
	srv := agenttest.NewServer(secret)
	defer srv.Close()
	srv.SetConfig(schedule(map[string]map[string]any{"broken": {"query": "SELECT * FROM no_such_table", "interval": 1}}))
	r := start(t, srv, t.TempDir(), fixtureRoot(t), nil)
	if !srv.WaitFor(10*time.Second, func() bool {
		for _, s := range srv.Status() {
			if strings.Contains(s.Message, "scheduled query failed") && strings.Contains(s.Message, "no such table") {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no status line for the failed query: %+v", srv.Status())
	}
	r.stop(t)
	for _, s := range srv.Status() {
		if strings.Contains(s.Message, "scheduled query failed") {
			if s.Severity != 1 || s.HostIdentifier != "testhost" || s.Filename == "" || s.Line == 0 {
				t.Fatalf("status line %+v", s)
			}
			return
		}
	}
}

func TestConfigFileAndFilesystemLogger(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "osquery.conf")
	must(t, os.WriteFile(cfg, []byte(`{
		"schedule": {"users": {"query": "SELECT username FROM users", "interval": "1"}},
		"packs": {"p": {"queries": {"snap": {"query": "SELECT username FROM users", "interval": 1, "snapshot": true}}}},
		"decorators": {"load": ["SELECT 'v1' AS build"]}
	}`), 0o600))
	opts := Options{DataDir: dir, ConfigPath: cfg, Root: fixtureRoot(t, "alice"), LoggerTLSPeriod: 100 * time.Millisecond, Logger: testLogger(t)}
	a, err := New(opts)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	logDir := filepath.Join(dir, "log")
	deadline := time.Now().Add(10 * time.Second)
	var results, snaps []byte
	for time.Now().Before(deadline) {
		results, _ = os.ReadFile(filepath.Join(logDir, "osqueryd.results.log"))
		snaps, _ = os.ReadFile(filepath.Join(logDir, "osqueryd.snapshots.log"))
		if len(results) > 0 && len(snaps) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	must(t, <-done)
	var l osquery.ResultLine
	if err := json.Unmarshal([]byte(strings.SplitN(string(results), "\n", 2)[0]), &l); err != nil {
		t.Fatalf("results log %q: %v", results, err)
	}
	if l.Name != "users" || l.Columns["username"] != "alice" || l.Decorations["build"] != "v1" {
		t.Fatalf("result line %+v", l)
	}
	if err := json.Unmarshal([]byte(strings.SplitN(string(snaps), "\n", 2)[0]), &l); err != nil {
		t.Fatalf("snapshots log %q: %v", snaps, err)
	}
	if l.Name != "pack_p_snap" || l.Action != osquery.ActionSnapshot {
		t.Fatalf("snapshot line %+v", l)
	}
}
