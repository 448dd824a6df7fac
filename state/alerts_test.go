package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

// TestListAlertRecordsPaging pages through alerts by every filter with
// keyset cursors and compares with the same list computed in Go: each
// alert once, in order (created_at, then id, newest first), ties of
// created_at included.
func TestListAlertRecordsPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var in []vigil.Alert
		for i := range 240 {
			host := fmt.Sprintf("h%d", i%4)
			name := fmt.Sprintf("web-%d", i%4)
			if i%4 == 3 {
				name = "h3" // a hostname equal to a host id: the two branches meet
			}
			in = append(in, vigil.Alert{RuleID: fmt.Sprintf("r%d", i%3), HostID: host, Hostname: name, EventID: fmt.Sprint("e", i),
				// Three alerts share each second, and ids do not follow time.
				CreatedAt: base.Add(time.Duration((i*7)%80) * time.Second)})
		}
		if _, err := db.CommitAlerts(ctx, "seed", "process_creation", 1, in); err != nil {
			t.Fatal(err)
		}
		all, err := db.ListAlertRecords(ctx, AlertFilter{Limit: MaxAlertLimit})
		if err != nil || len(all) != len(in) {
			t.Fatalf("all: %d alerts, %v", len(all), err)
		}
		for i := 1; i < len(all); i++ {
			p, c := all[i-1], all[i]
			if c.CreatedAt.After(p.CreatedAt) || (c.CreatedAt.Equal(p.CreatedAt) && c.ID > p.ID) {
				t.Fatalf("not newest first at %d: %v/%d then %v/%d", i, p.CreatedAt, p.ID, c.CreatedAt, c.ID)
			}
		}
		// Acknowledge a third, to filter by status.
		for i, a := range all {
			if i%3 == 0 {
				if err := db.SetAlertStatus(ctx, a.ID, vigil.AlertAcknowledged, "", ""); err != nil {
					t.Fatal(err)
				}
				all[i].Status = vigil.AlertAcknowledged
			}
		}
		for _, f := range []AlertFilter{
			{},
			{Status: vigil.AlertOpen},
			{Status: vigil.AlertAcknowledged},
			{RuleID: "r1"},
			{Host: "h1"},
			{Host: "web-2"},
			{Host: "h3"},
			{Host: "h2", RuleID: "r2", Status: vigil.AlertOpen},
			{Host: "nobody"},
		} {
			var want []int64
			for _, a := range all {
				if (f.Status == "" || a.Status == f.Status) && (f.RuleID == "" || a.RuleID == f.RuleID) &&
					(f.Host == "" || a.HostID == f.Host || a.Hostname == f.Host) {
					want = append(want, a.ID)
				}
			}
			for _, size := range []int{1, 7, 100} {
				var got []int64
				page := f
				page.Limit = size
				for n := 0; ; n++ {
					recs, err := db.ListAlertRecords(ctx, page)
					if err != nil {
						t.Fatalf("%+v: %v", page, err)
					}
					for _, r := range recs {
						got = append(got, r.ID)
						if r.MatchCount != 1 {
							t.Errorf("alert %d match count %d, want 1", r.ID, r.MatchCount)
						}
					}
					if len(recs) < size || n > len(in) {
						break
					}
					page.Before = recs[len(recs)-1].ID
				}
				if !slices.Equal(got, want) {
					t.Errorf("filter %+v in pages of %d: got %d alerts %v, want %d %v", f, size, len(got), got, len(want), want)
				}
			}
		}
		if _, err := db.ListAlertRecords(ctx, AlertFilter{Before: 1 << 40}); !errors.Is(err, vigil.ErrNotFound) {
			t.Errorf("before an alert that does not exist: %v, want not found", err)
		}
	})
}

// TestListAlertRecordsMatchCount checks that the list carries what the
// lifecycle counted: matches folded into an alert by dedupe.
func TestListAlertRecordsMatchCount(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		var ms []vigil.Alert
		for i := range 5 {
			ms = append(ms, vigil.Alert{RuleID: "r", HostID: "h", EventID: fmt.Sprint("e", i), Fields: map[string]any{"user_name": "root"}})
		}
		created, deduped, _, err := db.CommitMatches(ctx, "r", "process_creation", 5, ms, []string{"user_name"}, time.Hour)
		if err != nil || len(created) != 1 || deduped != 4 {
			t.Fatalf("created %d deduped %d: %v", len(created), deduped, err)
		}
		recs, err := db.ListAlertRecords(ctx, AlertFilter{RuleID: "r"})
		if err != nil || len(recs) != 1 {
			t.Fatalf("list %+v %v", recs, err)
		}
		if r := recs[0]; r.MatchCount != 5 || r.GroupKey != "root" || r.LastMatchAt.IsZero() || r.ID != created[0].ID {
			t.Errorf("record %+v: want 5 matches in group root", r)
		}
	})
}
