package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgresTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), pgtest.URL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// forEachBackend runs a test on SQLite and on PostgreSQL (skipped, saying
// why, when no PostgreSQL is installed).
func forEachBackend(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, openTest(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgresTest(t)) })
}

func TestOpenMigratesOnceAndUsesWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode %q, want wal", mode)
	}
	if db.Path() != path || db.Dialect() != SQLite || db.Shared() {
		t.Errorf("Path %q Dialect %q Shared %v", db.Path(), db.Dialect(), db.Shared())
	}
	// The clock stamps what the state dates itself.
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	db.SetClock(func() time.Time { return fixed })
	if err := db.Audit(ctx, AuditEntry{Actor: "a", Action: "x"}); err != nil {
		t.Fatal(err)
	}
	if log, _ := db.AuditLog(ctx, AuditFilter{}); len(log) != 1 || !log[0].Time.Equal(fixed) {
		t.Errorf("audit time %+v, want %v", log, fixed)
	}
	db.SetClock(time.Now)
	if _, err := db.CreateToken(ctx, "alice", "admin"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer db.Close()
	var n int
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM migrations`).Scan(&n)
	if n != len(migrations) {
		t.Errorf("%d migration rows, want %d", n, len(migrations))
	}
	toks, err := db.Tokens(ctx)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens after reopen: %v %v", toks, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.w.ExecContext(ctx, `INSERT INTO migrations (version, name, applied_at) VALUES (999, 'future', 0)`)
	db.Close()
	if db, err := Open(ctx, path, nil); err == nil {
		db.Close()
		t.Fatal("opened a file with a newer schema")
	}
}

func TestOpenBadPath(t *testing.T) {
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), nil); err == nil {
		t.Fatal("want error for a path in a missing directory")
	}
}

func enroll(t *testing.T, db *DB, ident, uuid string) (vigil.Host, string) {
	t.Helper()
	h, key, err := db.EnrollHost(context.Background(), vigil.Host{Identifier: ident, UUID: uuid, Hostname: ident, Platform: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	return h, key
}

func testEnrollAndNodeKeys(t *testing.T, db *DB) {
	ctx := context.Background()
	h1, k1 := enroll(t, db, "web1", "u-1")
	if h1.ID == "" || len(k1) < 40 {
		t.Fatalf("host %+v key %q", h1, k1)
	}
	got, err := db.HostByNodeKey(ctx, k1)
	if err != nil || got.ID != h1.ID || got.Hostname != "web1" || got.Platform != "linux" {
		t.Fatalf("HostByNodeKey = %+v, %v", got, err)
	}
	if _, err := db.HostByNodeKey(ctx, k1+"x"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("wrong key: %v, want ErrNotFound", err)
	}
	if _, err := db.HostByNodeKey(ctx, ""); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("empty key: %v, want ErrNotFound", err)
	}
	// The key is not stored in clear.
	var n int
	db.r.QueryRowContext(ctx, `SELECT count(*) FROM node_keys WHERE hash = ?`, []byte(k1)).Scan(&n)
	if n != 0 {
		t.Error("node key stored in clear")
	}

	// Same identifier and uuid: same host, new key, old key revoked.
	h1b, k1b := enroll(t, db, "web1", "u-1")
	if h1b.ID != h1.ID || k1b == k1 {
		t.Fatalf("re-enroll gave host %s key same=%v", h1b.ID, k1b == k1)
	}
	if !h1b.EnrolledAt.Equal(h1.EnrolledAt) {
		t.Errorf("re-enroll changed enrolled_at %v -> %v", h1.EnrolledAt, h1b.EnrolledAt)
	}
	if _, err := db.HostByNodeKey(ctx, k1); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("old key after re-enroll: %v, want ErrNotFound", err)
	}
	// Same identifier, other uuid: a second host (duplicate hostnames).
	h2, _ := enroll(t, db, "web1", "u-2")
	if h2.ID == h1.ID {
		t.Fatal("two machines with one host_identifier merged")
	}
	if _, _, err := db.EnrollHost(ctx, vigil.Host{}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("enroll without identifier: %v", err)
	}

	// Revocation.
	if n, err := db.RevokeNodeKeys(ctx, h1.ID); err != nil || n != 1 {
		t.Fatalf("RevokeNodeKeys = %d, %v", n, err)
	}
	if _, err := db.HostByNodeKey(ctx, k1b); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("revoked key still valid: %v", err)
	}
}

func testHostsFindTouchRemove(t *testing.T, db *DB) {
	ctx := context.Background()
	a, ka := enroll(t, db, "alpha", "")
	b, _ := enroll(t, db, "Beta", "u-b")
	hosts, err := db.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].ID != a.ID {
		t.Fatalf("Hosts = %v, %v", hosts, err)
	}
	got, err := db.Host(ctx, b.ID)
	if err != nil || got.Identifier != "Beta" || got.UUID != "u-b" {
		t.Fatalf("Host = %+v, %v", got, err)
	}
	if _, err := db.Host(ctx, "nope"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("Host(nope) = %v", err)
	}
	found, missing, err := db.FindHosts(ctx, []string{"beta", a.ID, "alpha", "ghost", " "})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[0].ID != b.ID || found[1].ID != a.ID {
		t.Errorf("FindHosts found %v", found)
	}
	if len(missing) != 1 || missing[0] != "ghost" {
		t.Errorf("FindHosts missing %v", missing)
	}

	later := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	if err := db.TouchHosts(ctx, map[string]Seen{a.ID: {Time: later, RemoteAddr: "10.0.0.7:4242"}}); err != nil {
		t.Fatal(err)
	}
	// An older check-in does not move last_seen back.
	if err := db.TouchHosts(ctx, map[string]Seen{a.ID: {Time: later.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	got, _ = db.Host(ctx, a.ID)
	if !got.LastSeen.Equal(later) || got.RemoteAddr != "10.0.0.7:4242" {
		t.Errorf("after TouchHosts: last_seen %v remote %q", got.LastSeen, got.RemoteAddr)
	}
	// CountHosts agrees with Host.Online over the listed hosts.
	hosts, _ = db.Hosts(ctx)
	// HostTargets lists the same hosts in the same order, with their
	// hostname and last check-in.
	targets, err := db.HostTargets(ctx)
	if err != nil || len(targets) != len(hosts) {
		t.Fatalf("HostTargets = %v, %v; Hosts %v", targets, err, hosts)
	}
	for i, h := range hosts {
		if tg := targets[i]; tg.ID != h.ID || tg.Hostname != h.Hostname || !tg.LastSeen.Equal(h.LastSeen) {
			t.Errorf("target %d = %+v, host %+v", i, tg, h)
		}
	}
	for _, since := range []time.Time{later, later.Add(time.Nanosecond), time.Now().Add(-time.Hour)} {
		online, total, err := db.CountHosts(ctx, since)
		want := 0
		for _, h := range hosts {
			if !h.LastSeen.IsZero() && !h.LastSeen.Before(since) {
				want++
			}
		}
		if err != nil || total != 2 || online != want {
			t.Errorf("CountHosts(%v) = %d online of %d, %v; want %d of 2", since, online, total, err, want)
		}
	}

	if err := db.RemoveHost(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.HostByNodeKey(ctx, ka); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("node key of removed host: %v", err)
	}
	if err := db.RemoveHost(ctx, a.ID); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
}

func testEnrollSecrets(t *testing.T, db *DB) {
	ctx := context.Background()
	now := time.Now()
	if err := db.AddEnrollSecret(ctx, "old", "old-secret-0123456789", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddEnrollSecret(ctx, "new", "new-secret-0123456789", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.AddEnrollSecret(ctx, "new", "whatever-0123456789", time.Time{}); !errors.Is(err, vigil.ErrConflict) {
		t.Errorf("duplicate name: %v", err)
	}
	if err := db.AddEnrollSecret(ctx, "short", "short", time.Time{}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("short secret: %v", err)
	}
	for _, c := range []struct {
		secret string
		at     time.Time
		name   string
		ok     bool
	}{
		{"old-secret-0123456789", now, "old", true},
		{"new-secret-0123456789", now, "new", true},
		{"new-secret-0123456789", now.Add(2 * time.Hour), "", false}, // expired
		{"nope-0123456789012345", now, "", false},
	} {
		name, ok, err := db.CheckEnrollSecret(ctx, c.secret, c.at)
		if err != nil || ok != c.ok || name != c.name {
			t.Errorf("CheckEnrollSecret(%q) = %q %v %v, want %q %v", c.secret, name, ok, err, c.name, c.ok)
		}
	}
	if err := db.RevokeEnrollSecret(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.CheckEnrollSecret(ctx, "old-secret-0123456789", now); ok {
		t.Error("revoked secret accepted")
	}
	if err := db.RevokeEnrollSecret(ctx, "old"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}
	list, err := db.EnrollSecrets(ctx)
	if err != nil || len(list) != 2 || list[0].RevokedAt.IsZero() || list[1].ExpiresAt.IsZero() {
		t.Errorf("EnrollSecrets = %+v, %v", list, err)
	}
}

func testTokensAndRoles(t *testing.T, db *DB) {
	ctx := context.Background()
	tok, err := db.CreateToken(ctx, "alice", "operator")
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.Authenticate(ctx, tok)
	if err != nil || p.Name != "alice" || p.Role != RoleOperator {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if ok, err := db.TokenValid(ctx, tok); !ok || err != nil {
		t.Errorf("TokenValid(good) = %v, %v", ok, err)
	}
	if ok, err := db.TokenValid(ctx, tok+"x"); ok || err != nil {
		t.Errorf("TokenValid(bad) = %v, %v", ok, err)
	}
	for _, bad := range []string{"", tok + "x", tok[:len(tok)-1]} {
		if _, err := db.Authenticate(ctx, bad); !errors.Is(err, vigil.ErrUnauthorized) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthorized", bad, err)
		}
	}
	if _, err := db.CreateToken(ctx, "bob", "root"); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("bad role: %v", err)
	}
	if _, err := db.CreateToken(ctx, " ", "viewer"); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("empty name: %v", err)
	}
	at := time.Now().Add(time.Minute)
	if err := db.TouchToken(ctx, p.TokenID, at); err != nil {
		t.Fatal(err)
	}
	toks, err := db.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].LastUsedAt.UnixNano() != at.UnixNano() {
		t.Fatalf("Tokens = %+v, %v", toks, err)
	}
	if err := db.RevokeToken(ctx, p.TokenID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, tok); !errors.Is(err, vigil.ErrUnauthorized) {
		t.Errorf("revoked token: %v", err)
	}
	if err := db.RevokeToken(ctx, p.TokenID); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}

	for _, c := range []struct {
		have, need Role
		ok         bool
	}{
		{RoleAdmin, RoleOperator, true}, {RoleOperator, RoleOperator, true}, {RoleViewer, RoleOperator, false},
		{RoleOperator, RoleAdmin, false}, {RoleViewer, RoleViewer, true}, {"", RoleViewer, false}, {"root", RoleViewer, false},
	} {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q.Allows(%q) = %v", c.have, c.need, got)
		}
	}
}

func testAuditAppendOnly(t *testing.T, db *DB) {
	ctx := context.Background()
	for i := range 3 {
		if err := db.Audit(ctx, AuditEntry{Actor: "alice", Action: "query.start", Target: fmt.Sprint("h", i),
			Source: "10.0.0.1:5000", Detail: map[string]any{"sql": "SELECT 1"}}); err != nil {
			t.Fatal(err)
		}
	}
	db.Audit(ctx, AuditEntry{Actor: "anonymous", Action: "auth.bad_token"})
	all, err := db.AuditLog(ctx, AuditFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("AuditLog = %d entries, %v", len(all), err)
	}
	if all[0].Detail["sql"] != "SELECT 1" || all[0].Source != "10.0.0.1:5000" || all[0].Time.IsZero() {
		t.Errorf("entry = %+v", all[0])
	}
	page, _ := db.AuditLog(ctx, AuditFilter{AfterID: all[1].ID, Limit: 1})
	if len(page) != 1 || page[0].ID != all[2].ID {
		t.Errorf("paging: %+v", page)
	}
	bad, _ := db.AuditLog(ctx, AuditFilter{Action: "auth.bad_token"})
	if len(bad) != 1 || bad[0].Actor != "anonymous" {
		t.Errorf("by action: %+v", bad)
	}
	if _, err := db.w.ExecContext(ctx, `UPDATE audit_log SET actor = 'mallory'`); err == nil {
		t.Error("UPDATE of audit log succeeded")
	}
	if _, err := db.w.ExecContext(ctx, `DELETE FROM audit_log`); err == nil {
		t.Error("DELETE from audit log succeeded")
	}
}

func testAlertsAndWatermarks(t *testing.T, db *DB) {
	ctx := context.Background()
	if wm, err := db.Watermark(ctx, "r1", "process_creation"); err != nil || wm != 0 {
		t.Fatalf("initial watermark %d, %v", wm, err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(rule, ev, host string, at time.Time) vigil.Alert {
		return vigil.Alert{RuleID: rule, RuleTitle: "T " + rule, Level: vigil.LevelHigh, HostID: host, Hostname: host + ".lan",
			EventID: ev, EventTime: at, CreatedAt: at, Fields: map[string]any{"pid": int64(9007199254740993), "path": "/bin/sh"}}
	}
	n, err := db.CommitAlerts(ctx, "r1", "process_creation", 10, []vigil.Alert{
		mk("r1", "e1", "h1", base), mk("r1", "e2", "h2", base.Add(time.Second)),
	})
	if err != nil || n != 2 {
		t.Fatalf("CommitAlerts = %d, %v", n, err)
	}
	// A replay of e2 plus a new e3: only e3 inserted.
	n, err = db.CommitAlerts(ctx, "r1", "process_creation", 20, []vigil.Alert{
		mk("r1", "e2", "h2", base.Add(time.Second)), mk("r1", "e3", "h1", base.Add(2*time.Second)),
	})
	if err != nil || n != 1 {
		t.Fatalf("CommitAlerts replay = %d, %v", n, err)
	}
	// The same event under another rule is another alert.
	if n, err := db.CommitAlerts(ctx, "r2", "process_creation", 20, []vigil.Alert{mk("", "e1", "h1", base.Add(3*time.Second))}); err != nil || n != 1 {
		t.Fatalf("other rule = %d, %v", n, err)
	}
	// The watermark never goes back.
	if _, err := db.CommitAlerts(ctx, "r1", "process_creation", 5, nil); err != nil {
		t.Fatal(err)
	}
	if wm, _ := db.Watermark(ctx, "r1", "process_creation"); wm != 20 {
		t.Errorf("watermark %d, want 20", wm)
	}
	if wm, _ := db.Watermark(ctx, "r1", "network_connection"); wm != 0 {
		t.Errorf("watermark of another table %d, want 0", wm)
	}
	// A failing batch commits nothing, watermark included.
	if _, err := db.CommitAlerts(ctx, "r1", "process_creation", 30, []vigil.Alert{mk("r1", "e9", "h1", base), {RuleID: "r1"}}); err == nil {
		t.Fatal("alert without event id accepted")
	}
	if wm, _ := db.Watermark(ctx, "r1", "process_creation"); wm != 20 {
		t.Errorf("watermark moved by a failed commit: %d", wm)
	}

	all, err := db.ListAlerts(ctx, AlertFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("ListAlerts = %d, %v", len(all), err)
	}
	if all[0].RuleID != "r2" || all[3].EventID != "e1" || all[0].Status != vigil.AlertOpen || all[0].EventTable != "process_creation" {
		t.Errorf("order/defaults wrong: first %+v last %+v", all[0], all[3])
	}
	if pid := fmt.Sprint(all[0].Fields["pid"]); pid != "9007199254740993" {
		t.Errorf("fields pid %s lost precision", pid)
	}
	for _, c := range []struct {
		f    AlertFilter
		want int
	}{
		{AlertFilter{RuleID: "r1"}, 3}, {AlertFilter{Host: "h1"}, 3}, {AlertFilter{Host: "h2.lan"}, 1},
		{AlertFilter{Limit: 2}, 2}, {AlertFilter{Status: vigil.AlertClosed}, 0}, {AlertFilter{Status: vigil.AlertOpen, RuleID: "r1", Host: "h1"}, 2},
	} {
		got, err := db.ListAlerts(ctx, c.f)
		if err != nil || len(got) != c.want {
			t.Errorf("ListAlerts(%+v) = %d, %v; want %d", c.f, len(got), err, c.want)
		}
	}
	if err := db.SetAlertStatus(ctx, all[0].ID, vigil.AlertClosed, "alice", "benign"); err != nil {
		t.Fatal(err)
	}
	closed, _ := db.ListAlerts(ctx, AlertFilter{Status: vigil.AlertClosed})
	if len(closed) != 1 || closed[0].CloseReason != "benign" || closed[0].Assignee != "alice" {
		t.Errorf("closed = %+v", closed)
	}
	if err := db.SetAlertStatus(ctx, 99999, vigil.AlertClosed, "", ""); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("unknown alert: %v", err)
	}
	if err := db.SetAlertStatus(ctx, all[0].ID, "bogus", "", ""); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("bad status: %v", err)
	}
}

func testConcurrentCommitAlerts(t *testing.T, db *DB) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				// Workers overlap on event ids: every id must end up once.
				a := vigil.Alert{RuleID: "r", EventID: fmt.Sprint("e", (w*7+i)%50), EventTable: "t"}
				if _, err := db.CommitAlerts(ctx, "r", "t", int64(i), []vigil.Alert{a}); err != nil {
					errs <- err
					return
				}
				if _, err := db.ListAlerts(ctx, AlertFilter{Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, _ := db.ListAlerts(ctx, AlertFilter{Limit: 1000})
	seen := map[string]bool{}
	for _, a := range all {
		if seen[a.EventID] {
			t.Fatalf("duplicate alert for %s", a.EventID)
		}
		seen[a.EventID] = true
	}
}

func TestEnrollAndNodeKeys(t *testing.T) { forEachBackend(t, testEnrollAndNodeKeys) }

func TestHostsFindTouchRemove(t *testing.T) { forEachBackend(t, testHostsFindTouchRemove) }

func TestEnrollSecrets(t *testing.T) { forEachBackend(t, testEnrollSecrets) }

func TestTokensAndRoles(t *testing.T) { forEachBackend(t, testTokensAndRoles) }

func TestAuditAppendOnly(t *testing.T) { forEachBackend(t, testAuditAppendOnly) }

func TestAlertsAndWatermarks(t *testing.T) { forEachBackend(t, testAlertsAndWatermarks) }

func TestConcurrentCommitAlerts(t *testing.T) { forEachBackend(t, testConcurrentCommitAlerts) }
