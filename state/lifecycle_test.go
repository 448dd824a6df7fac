package state_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/state/pgtest"
)

// onBoth runs fn against SQLite and PostgreSQL (when pgtest has one).
func onBoth(t *testing.T, fn func(t *testing.T, db *state.DB, now *time.Time)) {
	for _, backend := range []string{state.SQLite, state.Postgres} {
		t.Run(backend, func(t *testing.T) {
			db, now := openLifecycle(t, backend)
			fn(t, db, now)
		})
	}
}

func openLifecycle(t *testing.T, backend string) (*state.DB, *time.Time) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	if backend == state.Postgres {
		path = pgtest.URL(t)
	}
	db, err := state.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	db.SetClock(func() time.Time { return now })
	return db, &now
}

func match(ev, host, user string) vigil.Alert {
	return vigil.Alert{RuleID: "r1", RuleTitle: "R1", Level: vigil.LevelHigh, HostID: host, Hostname: host + ".lan",
		EventID: ev, Fields: map[string]any{"user_name": user, "pid": int64(42)}}
}

func TestCommitMatchesDedupesWithinWindow(t *testing.T) { onBoth(t, testCommitMatchesDedupes) }

func testCommitMatchesDedupes(t *testing.T, db *state.DB, now *time.Time) {
	ctx := context.Background()
	win := 10 * time.Minute
	group := []string{"user_name"}
	created, dd, sp, err := db.CommitMatches(ctx, "r1", "process_creation", 3, []vigil.Alert{
		match("e1", "h1", "alice"), match("e2", "h1", "alice"), match("e3", "h1", "bob"), match("e4", "h2", "alice"),
	}, group, win)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 3 || dd != 1 || sp != 0 {
		t.Fatalf("created %d deduped %d suppressed %d, want 3 1 0", len(created), dd, sp)
	}
	if wm, _ := db.Watermark(ctx, "r1", "process_creation"); wm != 3 {
		t.Errorf("watermark %d", wm)
	}
	first := created[0]
	if first.ID == 0 || first.EventID != "e1" || first.Status != vigil.AlertOpen || first.EventTable != "process_creation" {
		t.Errorf("created %+v", first)
	}
	// The same matches again (a correlation re-reading its window) change nothing.
	created, dd, _, err = db.CommitMatches(ctx, "r1", "process_creation", 3, []vigil.Alert{match("e1", "h1", "alice"), match("e2", "h1", "alice")}, group, win)
	if err != nil || len(created) != 0 || dd != 0 {
		t.Fatalf("replay: created %v deduped %d err %v", created, dd, err)
	}
	*now = now.Add(9 * time.Minute)
	if _, dd, _, _ = db.CommitMatches(ctx, "r1", "process_creation", 4, []vigil.Alert{match("e5", "h1", "alice")}, group, win); dd != 1 {
		t.Errorf("within the window: deduped %d, want 1", dd)
	}
	d, err := db.AlertDedupes(ctx, []int64{first.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got := d[first.ID]; got.MatchCount != 3 || got.GroupKey != "alice" || !got.LastMatchAt.Equal(*now) {
		t.Errorf("dedupe of the first alert %+v", got)
	}
	// Past the window (anchored at the alert's creation) a new alert opens.
	*now = now.Add(2 * time.Minute)
	if created, _, _, _ = db.CommitMatches(ctx, "r1", "process_creation", 5, []vigil.Alert{match("e6", "h1", "alice")}, group, win); len(created) != 1 {
		t.Errorf("past the window: %d created, want 1", len(created))
	}
	// A closed alert absorbs nothing.
	if err := db.SetAlertStatus(ctx, created[0].ID, vigil.AlertClosed, "", "fp"); err != nil {
		t.Fatal(err)
	}
	if created, _, _, _ = db.CommitMatches(ctx, "r1", "process_creation", 6, []vigil.Alert{match("e7", "h1", "alice")}, group, win); len(created) != 1 {
		t.Errorf("after close: %d created, want 1", len(created))
	}
	// Window 0: one alert per match.
	if created, _, _, _ = db.CommitMatches(ctx, "r1", "process_creation", 7, []vigil.Alert{match("e8", "h1", "alice"), match("e9", "h1", "alice")}, group, 0); len(created) != 2 {
		t.Errorf("window 0: %d created, want 2", len(created))
	}
	log, err := db.AuditLog(ctx, state.AuditFilter{Action: "alert.create"})
	if err != nil || len(log) != 7 || log[0].Actor != state.AuditActorDetect || log[0].Detail["event_id"] != "e1" {
		t.Errorf("alert.create audit %d entries %+v %v", len(log), log, err)
	}
	if log, _ := db.AuditLog(ctx, state.AuditFilter{Action: "alert.dedupe"}); len(log) != 2 {
		t.Errorf("alert.dedupe audit %+v", log)
	}
}

func TestSuppressions(t *testing.T) { onBoth(t, testSuppressions) }

func testSuppressions(t *testing.T, db *state.DB, now *time.Time) {
	ctx := context.Background()
	for _, bad := range []state.Suppression{
		{Reason: "everything", ExpiresAt: now.Add(time.Hour)},
		{RuleID: "r1", ExpiresAt: now.Add(-time.Second)},
		{Value: "x", RuleID: "r1", ExpiresAt: now.Add(time.Hour)},
	} {
		if _, err := db.AddSuppression(ctx, bad, "alice", "127.0.0.1"); !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("suppression %+v: %v", bad, err)
		}
	}
	s, err := db.AddSuppression(ctx, state.Suppression{RuleID: "r1", Host: "h1.lan", Field: "user_name", Value: "backup",
		Reason: "nightly job", ExpiresAt: now.Add(time.Hour)}, "alice", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	created, _, sp, err := db.CommitMatches(ctx, "r1", "t", 1, []vigil.Alert{
		match("e1", "h1", "backup"), match("e2", "h1", "alice"), match("e3", "h2", "backup"), match("e4", "h1", "backup"),
	}, nil, 0)
	if err != nil || len(created) != 2 || sp != 2 {
		t.Fatalf("created %d suppressed %d err %v, want 2 2", len(created), sp, err)
	}
	list, err := db.Suppressions(ctx, false)
	if err != nil || len(list) != 1 || list[0].Hits != 2 || list[0].CreatedBy != "alice" || !list[0].LastHitAt.Equal(*now) {
		t.Fatalf("suppressions %+v %v", list, err)
	}
	// After expiry it no longer applies.
	*now = now.Add(time.Hour)
	if created, _, sp, _ = db.CommitMatches(ctx, "r1", "t", 2, []vigil.Alert{match("e5", "h1", "backup")}, nil, 0); len(created) != 1 || sp != 0 {
		t.Errorf("after expiry: created %d suppressed %d", len(created), sp)
	}
	if list, _ := db.Suppressions(ctx, false); len(list) != 0 {
		t.Errorf("active after expiry: %+v", list)
	}
	s2, _ := db.AddSuppression(ctx, state.Suppression{Host: "h2", ExpiresAt: now.Add(time.Hour)}, "bob", "")
	if err := db.ExpireSuppression(ctx, s2.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.ExpireSuppression(ctx, s2.ID, "bob", ""); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("expiring twice: %v", err)
	}
	if all, _ := db.Suppressions(ctx, true); len(all) != 2 || all[1].ID != s.ID {
		t.Errorf("all suppressions %+v", all)
	}
	for _, action := range []string{"suppression.create", "suppression.hit", "suppression.expire"} {
		if log, _ := db.AuditLog(ctx, state.AuditFilter{Action: action}); len(log) == 0 {
			t.Errorf("no %s audit entry", action)
		}
	}
}
