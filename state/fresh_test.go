package state

import (
	"context"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

// Reads on the pooled, prepared statements must see every write committed
// before them: a statement left open on a reader connection would pin an
// old snapshot, and a long-polling agent would miss its query.
func TestReadsSeeCommittedWrites(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	h, key, err := db.EnrollHost(ctx, vigil.Host{Identifier: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		// Exercise the hot statements on the reader pool first.
		if _, err := db.HostByNodeKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		if q, err := db.TakePendingQueries(ctx, h.ID, time.Now()); err != nil || len(q) != 0 {
			t.Fatalf("round %d: before the campaign: %v %v", i, q, err)
		}
		c, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Deadline: time.Now().Add(time.Minute),
			Hosts: []CampaignHost{{HostID: h.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := db.TakePendingQueries(ctx, h.ID, time.Now())
		if err != nil || q[c.ID] == "" {
			t.Fatalf("round %d: a committed campaign was not seen: %v %v", i, q, err)
		}
		if _, _, err := db.RecordResult(ctx, c.ID, h.ID, Result{Status: StatusOK}); err != nil {
			t.Fatal(err)
		}
	}
}
