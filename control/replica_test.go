package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/state/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replica is one control server over its own handle on a shared
// PostgreSQL state, behind its own TLS listener.
func newReplica(t *testing.T, url string, bundle pki.Bundle, mod func(*Options)) *env {
	t.Helper()
	db, err := state.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sink := &fakeSink{}
	opts := Options{State: db, Ingest: sink, EnrollSecret: testSecret, Rejoin: parkHolds}
	if mod != nil {
		mod(&opts)
	}
	srv, hs, rl := serve(t, opts, bundle)
	return &env{t: t, db: db, srv: srv, sink: sink, http: hs, ln: rl,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}}}}
}

// TestReplicasShareLiveQueries: an agent long-polling replica A gets a
// query started on replica B at once, and B's subscriber sees the answer
// the agent wrote through A.
func TestReplicasShareLiveQueries(t *testing.T) {
	url := pgtest.URL(t)
	bundle, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newReplica(t, url, bundle, nil)
	b := newReplica(t, url, bundle, nil)
	ctx := context.Background()
	key, h := a.enroll("enroll_vigil.json")
	// B learns A's check-ins through the shared state; make them visible.
	a.srv.flushSeen(false)

	got := make(chan map[string]string, 1)
	go func() {
		q, _ := a.readQueries(ctx, key, 30_000)
		got <- q
	}()
	time.Sleep(100 * time.Millisecond) // let the read be held on A
	c, err := b.srv.StartCampaign(ctx, "alice", "SELECT 7", Target{Hosts: []string{h.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Hosts[0].Status != state.StatusPending {
		t.Fatalf("host offline on B: %+v", c.Hosts)
	}
	events, cancel := b.srv.Subscribe(c.ID)
	defer cancel()
	select {
	case q := <-got:
		if q[c.ID] != "SELECT 7" {
			t.Fatalf("A's held read answered %v", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a query started on replica B did not reach the agent held on replica A within 10 s")
	}
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key,
		Queries: map[string][]map[string]string{c.ID: {{"seven": "7"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
	if r := a.post(osquery.PathDistributedWrite, wb); r.status != 200 {
		t.Fatalf("write via A: %d %s", r.status, r.body)
	}
	evs := collect(t, events, 10*time.Second)
	if len(evs) != 3 || evs[0].Type != EventResult || evs[0].Rows[0]["seven"] != "7" || evs[1].Status != "ok" || evs[2].Type != EventDone {
		t.Errorf("B's subscriber saw %+v", evs)
	}
}

// TestReplicaSweepsOrphanedCampaign: a campaign whose replica stopped
// before its deadline is timed out by another.
func TestReplicaSweepsOrphanedCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a sweep (5 s)")
	}
	url := pgtest.URL(t)
	bundle, _ := pki.Ensure(t.TempDir(), nil)
	a := newReplica(t, url, bundle, nil)
	b := newReplica(t, url, bundle, func(o *Options) { o.QueryTimeout = 200 * time.Millisecond })
	_, h := a.enroll("enroll.json")
	a.srv.flushSeen(false)
	c, err := b.srv.StartCampaign(context.Background(), "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
	if err != nil {
		t.Fatal(err)
	}
	b.srv.Close() // B goes away with its timer
	events, cancel := a.srv.Subscribe(c.ID)
	defer cancel()
	evs := collect(t, events, 3*SweepInterval)
	if last := evs[len(evs)-1]; last.Type != EventDone || last.Summary.Timeout != 1 {
		t.Errorf("after sweep: %+v", evs)
	}
}
