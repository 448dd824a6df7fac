package state

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

func testCampaignLifecycle(t *testing.T, db *DB) {
	ctx := context.Background()
	a, _ := enroll(t, db, "a", "")
	b, _ := enroll(t, db, "b", "")
	c, _ := enroll(t, db, "c", "")
	now := time.Now()
	camp, err := db.CreateCampaign(ctx, Campaign{
		SQL: "SELECT 1", Actor: "alice", CreatedAt: now, Deadline: now.Add(time.Minute),
		Hosts: []CampaignHost{{HostID: a.ID, Hostname: "a"}, {HostID: b.ID, Hostname: "b"}, {HostID: c.ID, Hostname: "c", Status: StatusOffline}},
	}, &AuditEntry{Actor: "alice", Action: "query.start", Source: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if camp.ID == "" || camp.Done || camp.Summary.Pending != 2 || camp.Summary.Offline != 1 {
		t.Fatalf("created %+v", camp)
	}
	if log, _ := db.AuditLog(ctx, AuditFilter{}); len(log) != 1 || log[0].Action != "query.start" {
		t.Errorf("audit entry not written with the campaign: %+v", log)
	}

	// Hosts with a query waiting: the pending ones, not the offline one.
	if ids, err := db.PendingHosts(ctx); err != nil || !sameSet(ids, a.ID, b.ID) {
		t.Errorf("PendingHosts = %v, %v; want a and b", ids, err)
	}

	// a asks: gets the query once.
	q, err := db.TakePendingQueries(ctx, a.ID, now)
	if err != nil || q[camp.ID] != "SELECT 1" || len(q) != 1 {
		t.Fatalf("TakePendingQueries = %v, %v", q, err)
	}
	if ids, err := db.PendingHosts(ctx); err != nil || !sameSet(ids, b.ID) {
		t.Errorf("PendingHosts after a took its query = %v, %v; want b", ids, err)
	}
	if q, _ := db.TakePendingQueries(ctx, a.ID, now); len(q) != 0 {
		t.Errorf("query handed out twice: %v", q)
	}
	// The offline host is not asked.
	if q, _ := db.TakePendingQueries(ctx, c.ID, now); len(q) != 0 {
		t.Errorf("offline host got %v", q)
	}

	rec, done, err := db.RecordResult(ctx, camp.ID, a.ID, Result{Status: StatusOK, Rows: []map[string]string{{"x": "1"}}})
	if err != nil || !rec || done {
		t.Fatalf("RecordResult a = %v %v %v", rec, done, err)
	}
	// A second answer from a is ignored.
	if rec, _, _ := db.RecordResult(ctx, camp.ID, a.ID, Result{Status: StatusError, Error: "late"}); rec {
		t.Error("second answer recorded")
	}
	// A host that is not a target cannot write into the campaign.
	if rec, _, _ := db.RecordResult(ctx, camp.ID, "intruder", Result{Status: StatusOK}); rec {
		t.Error("non-target recorded")
	}
	if _, _, err := db.RecordResult(ctx, camp.ID, b.ID, Result{Status: "weird"}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("bad status: %v", err)
	}
	// b answers without having asked (pending -> error is allowed) and completes the campaign.
	rec, done, err = db.RecordResult(ctx, camp.ID, b.ID, Result{Status: StatusError, Error: "no such table: nope"})
	if err != nil || !rec || !done {
		t.Fatalf("RecordResult b = %v %v %v", rec, done, err)
	}
	got, err := db.GetCampaign(ctx, camp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := db.CampaignSummary(ctx, camp.ID); err != nil || s != got.Summary {
		t.Errorf("CampaignSummary = %+v %v, GetCampaign says %+v", s, err, got.Summary)
	}
	if h, err := db.CampaignHost(ctx, camp.ID, a.ID); err != nil || h.Status != StatusOK || len(h.Rows) != 1 || h.Rows[0]["x"] != "1" {
		t.Errorf("CampaignHost(a) = %+v %v", h, err)
	}
	if h, err := db.CampaignHost(ctx, camp.ID, b.ID); err != nil || h.Status != StatusError || h.Rows != nil {
		t.Errorf("CampaignHost(b) = %+v %v", h, err)
	}
	if _, err := db.CampaignHost(ctx, camp.ID, "nope"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("CampaignHost(nope) = %v", err)
	}
	if s, _ := db.CampaignSummary(ctx, "nope"); s.Total != 0 {
		t.Errorf("summary of an unknown campaign %+v", s)
	}
	if !got.Done || got.Summary != (Summary{Total: 3, OK: 1, Error: 1, Offline: 1}) {
		t.Errorf("campaign %+v", got)
	}
	byID := map[string]CampaignHost{}
	for _, h := range got.Hosts {
		byID[h.HostID] = h
	}
	if h := byID[a.ID]; h.Status != StatusOK || len(h.Rows) != 1 || h.Rows[0]["x"] != "1" || h.RowCount != 1 {
		t.Errorf("host a %+v", h)
	}
	if h := byID[b.ID]; h.Status != StatusError || h.Error != "no such table: nope" || h.Rows != nil {
		t.Errorf("host b %+v", h)
	}
	// Expiring a completed campaign changes nothing.
	if to, completed, err := db.ExpireCampaign(ctx, camp.ID, now.Add(time.Hour)); err != nil || completed || len(to) != 0 {
		t.Errorf("ExpireCampaign on done = %v %v %v", to, completed, err)
	}
	if _, err := db.GetCampaign(ctx, "nope"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("GetCampaign(nope) = %v", err)
	}
}

func testCampaignTimeout(t *testing.T, db *DB) {
	ctx := context.Background()
	a, _ := enroll(t, db, "a", "")
	b, _ := enroll(t, db, "b", "")
	now := time.Now()
	camp, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 2", Actor: "op", CreatedAt: now, Deadline: now.Add(time.Second),
		Hosts: []CampaignHost{{HostID: a.ID, Hostname: "a"}, {HostID: b.ID, Hostname: "b"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Past the deadline, nothing is handed out.
	if q, _ := db.TakePendingQueries(ctx, a.ID, now.Add(2*time.Second)); len(q) != 0 {
		t.Errorf("expired query handed out: %v", q)
	}
	db.TakePendingQueries(ctx, b.ID, now)
	open, err := db.OpenCampaigns(ctx)
	if err != nil || len(open) != 1 || open[0].ID != camp.ID {
		t.Fatalf("OpenCampaigns = %v, %v", open, err)
	}
	to, completed, err := db.ExpireCampaign(ctx, camp.ID, now.Add(2*time.Second))
	if err != nil || !completed || len(to) != 2 || to[0].Status != StatusTimeout {
		t.Fatalf("ExpireCampaign = %+v %v %v", to, completed, err)
	}
	// A late answer is not recorded.
	if rec, _, _ := db.RecordResult(ctx, camp.ID, b.ID, Result{Status: StatusOK}); rec {
		t.Error("late answer recorded")
	}
	if open, _ := db.OpenCampaigns(ctx); len(open) != 0 {
		t.Errorf("still open: %v", open)
	}
	list, err := db.ListCampaigns(ctx, 10)
	if err != nil || len(list) != 1 || list[0].Summary.Timeout != 2 || !list[0].Done || list[0].Hosts != nil {
		t.Errorf("ListCampaigns = %+v, %v", list, err)
	}
}

func testCampaignAllOfflineCompletesAtOnce(t *testing.T, db *DB) {
	ctx := context.Background()
	a, _ := enroll(t, db, "a", "")
	camp, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 3", Deadline: time.Now().Add(time.Minute),
		Hosts: []CampaignHost{{HostID: a.ID, Status: StatusOffline}}}, nil)
	if err != nil || !camp.Done {
		t.Fatalf("campaign %+v %v", camp, err)
	}
	got, _ := db.GetCampaign(ctx, camp.ID)
	if !got.Done {
		t.Error("stored campaign not done")
	}
	if _, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1"}, nil); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("campaign without hosts: %v", err)
	}
}

func TestCampaignLifecycle(t *testing.T) { forEachBackend(t, testCampaignLifecycle) }

func TestCampaignTimeout(t *testing.T) { forEachBackend(t, testCampaignTimeout) }

func TestCampaignAllOfflineCompletesAtOnce(t *testing.T) {
	forEachBackend(t, testCampaignAllOfflineCompletesAtOnce)
}

// Many hosts claiming at once (batched into few statements): each gets its
// own query exactly once, even when it asks twice concurrently.
func testConcurrentClaims(t *testing.T, db *DB) {
	ctx := context.Background()
	var hosts []CampaignHost
	for i := range 200 {
		h, _, err := db.EnrollHost(ctx, vigil.Host{Identifier: fmt.Sprint("h", i)})
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, CampaignHost{HostID: h.ID})
	}
	now := time.Now()
	c, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 9", Deadline: now.Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q, err := db.TakePendingQueries(ctx, h.HostID, now)
				if err != nil {
					t.Error(err)
					return
				}
				if len(q) > 0 {
					if q[c.ID] != "SELECT 9" {
						t.Errorf("host %s got %v", h.HostID, q)
					}
					mu.Lock()
					got[h.HostID]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(got) != len(hosts) {
		t.Errorf("%d of %d hosts got the query", len(got), len(hosts))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("host %s got the query %d times", id, n)
		}
	}
}

func TestConcurrentClaims(t *testing.T) { forEachBackend(t, testConcurrentClaims) }

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	m := map[string]bool{}
	for _, g := range got {
		m[g] = true
	}
	for _, w := range want {
		if !m[w] {
			return false
		}
	}
	return true
}

// A campaign over more hosts than one INSERT carries: every target is
// stored with its own status, and answers complete it as before.
func testCampaignManyHosts(t *testing.T, db *DB) {
	ctx := context.Background()
	n := 2*campaignHostsPerInsert + 7
	var hosts []CampaignHost
	for i := range n {
		h := CampaignHost{HostID: fmt.Sprint("h-", i), Hostname: fmt.Sprint("host-", i)}
		if i%100 == 3 {
			h.Status, h.Error = StatusOffline, "offline at start"
		}
		hosts = append(hosts, h)
	}
	now := time.Now()
	c, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Actor: "a", CreatedAt: now, Deadline: now.Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.GetCampaign(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Hosts) != n {
		t.Fatalf("%d hosts stored, want %d", len(got.Hosts), n)
	}
	offline := 0
	for _, h := range got.Hosts {
		var i int
		fmt.Sscanf(h.HostID, "h-%d", &i)
		want := hosts[i]
		if h.Hostname != want.Hostname || h.Status != cmp.Or(want.Status, StatusPending) || h.Error != want.Error {
			t.Fatalf("stored %+v, want %+v", h, want)
		}
		if h.Status == StatusOffline {
			offline++
		}
	}
	if got.Summary.Offline != offline || got.Summary.Pending != n-offline {
		t.Errorf("summary %+v, want %d offline and %d pending", got.Summary, offline, n-offline)
	}
	completed := 0
	for _, h := range hosts {
		if h.Status == StatusOffline {
			continue
		}
		_, done, err := db.RecordResult(ctx, c.ID, h.HostID, Result{Status: StatusOK})
		if err != nil {
			t.Fatal(err)
		}
		if done {
			completed++
		}
	}
	if completed != 1 {
		t.Errorf("%d answers completed the campaign, want 1", completed)
	}
}

func TestCampaignManyHosts(t *testing.T) { forEachBackend(t, testCampaignManyHosts) }

// Answers arriving together, as at 10,000 long-polling hosts, are
// recorded in batches: each host's first answer is recorded (one per
// host, the others refused), every row stored is one the host sent, and
// exactly one answer completes the campaign.
func TestCampaignConcurrentAnswers(t *testing.T) { forEachBackend(t, testCampaignConcurrentAnswers) }

func testCampaignConcurrentAnswers(t *testing.T, db *DB) {
	ctx := context.Background()
	const n = 800
	var hosts []CampaignHost
	for i := range n {
		hosts = append(hosts, CampaignHost{HostID: fmt.Sprint("h-", i), Hostname: fmt.Sprint("host-", i)})
	}
	now := time.Now()
	c, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Actor: "a", CreatedAt: now, Deadline: now.Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	recorded := map[string]int{}
	completed := 0
	var wg sync.WaitGroup
	for _, h := range hosts {
		for try := range 2 { // every host answers twice at once
			wg.Go(func() {
				rec, done, err := db.RecordResult(ctx, c.ID, h.HostID, Result{Status: StatusOK,
					Rows: []map[string]string{{"host": h.HostID, "try": fmt.Sprint(try)}}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if rec {
					recorded[h.HostID]++
				}
				if done {
					completed++
				}
			})
		}
	}
	wg.Wait()
	if len(recorded) != n || completed != 1 {
		t.Fatalf("%d hosts recorded, %d completions; want %d and 1", len(recorded), completed, n)
	}
	for h, k := range recorded {
		if k != 1 {
			t.Fatalf("host %s recorded %d times", h, k)
		}
	}
	got, err := db.GetCampaign(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.Summary.OK != n {
		t.Fatalf("campaign %+v", got.Summary)
	}
	for _, h := range got.Hosts {
		if len(h.Rows) != 1 || h.Rows[0]["host"] != h.HostID || h.RowCount != 1 {
			t.Fatalf("host %s stored %v (%d rows)", h.HostID, h.Rows, h.RowCount)
		}
	}
}

// One batch of the result writer: two campaigns, a host answering twice,
// errors, and answers to a campaign that already timed out.
func TestWriteResultsBatch(t *testing.T) { forEachBackend(t, testWriteResultsBatch) }

func testWriteResultsBatch(t *testing.T, db *DB) {
	ctx := context.Background()
	now := time.Now()
	const n = 700
	var hosts []CampaignHost
	for i := range n {
		hosts = append(hosts, CampaignHost{HostID: fmt.Sprint("h-", i), Hostname: fmt.Sprint("host-", i)})
	}
	open, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Actor: "a", CreatedAt: now, Deadline: now.Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 2", Actor: "a", CreatedAt: now, Deadline: now.Add(time.Minute), Hosts: hosts[:5]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.ExpireCampaign(ctx, expired.ID, now); err != nil {
		t.Fatal(err)
	}
	answer := func(campaign string, i int, try int) *resultReq {
		r := Result{Status: StatusOK, Rows: []map[string]string{{"b": fmt.Sprint(i), "a": fmt.Sprint(try)}}, Columns: []string{"b", "a"},
			Time: now.Add(time.Duration(i) * time.Millisecond)}
		q := &resultReq{campaignID: campaign, hostID: fmt.Sprint("h-", i), r: r,
			rowsJSON: string(osquery.AppendRows(nil, r.Rows, r.Columns)), columnsJSON: string(osquery.AppendStrings(nil, r.Columns)), rowCount: len(r.Rows)}
		if i%7 == 3 {
			q.r = Result{Status: StatusError, Error: fmt.Sprint("no such table ", i), Time: r.Time}
			q.rowsJSON, q.columnsJSON, q.rowCount = nil, nil, 0
		}
		return q
	}
	var batch []*resultReq
	for i := range n {
		batch = append(batch, answer(open.ID, i, 0))
		if i == 10 {
			batch = append(batch, answer(open.ID, 10, 1)) // the same host again
		}
		if i < 5 {
			batch = append(batch, answer(expired.ID, i, 0))
		}
	}
	if err := db.writeResults(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	recorded, completed := map[string]int{}, 0
	for _, q := range batch {
		if q.recorded {
			recorded[q.campaignID]++
		}
		if q.completed {
			completed++
			if q.campaignID != open.ID || q.hostID != fmt.Sprint("h-", n-1) {
				t.Errorf("completed by %s of %s, want the batch's last answer to the open campaign", q.hostID, q.campaignID)
			}
		}
	}
	if recorded[open.ID] != n || recorded[expired.ID] != 0 || completed != 1 {
		t.Fatalf("recorded %v, %d completions; want %d for the open campaign, none for the expired one, 1 completion", recorded, completed, n)
	}
	got, err := db.GetCampaign(ctx, open.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.Summary.OK+got.Summary.Error != n {
		t.Fatalf("campaign %+v", got.Summary)
	}
	for _, h := range got.Hosts {
		var i int
		fmt.Sscanf(h.HostID, "h-%d", &i)
		if i%7 == 3 {
			if h.Status != StatusError || h.Error != fmt.Sprint("no such table ", i) || h.Rows != nil || h.RowCount != 0 {
				t.Fatalf("host %s: %+v", h.HostID, h)
			}
			continue
		}
		if h.Status != StatusOK || len(h.Rows) != 1 || h.Rows[0]["b"] != fmt.Sprint(i) || h.Rows[0]["a"] != "0" ||
			h.RowCount != 1 || !slices.Equal(h.Columns, []string{"b", "a"}) || !h.UpdatedAt.Equal(fromTS(ts(now.Add(time.Duration(i)*time.Millisecond)))) {
			t.Fatalf("host %s: %+v", h.HostID, h)
		}
	}
	exp, err := db.GetCampaign(ctx, expired.ID)
	if err != nil {
		t.Fatal(err)
	}
	if exp.Summary.Timeout != 5 {
		t.Fatalf("expired campaign %+v: an answer after the timeout was recorded", exp.Summary)
	}
}
