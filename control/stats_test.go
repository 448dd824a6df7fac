package control

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

func TestStats(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	key, _ := e.enroll("enroll.json")
	vkey, vh := e.enroll("enroll_vigil.json")
	e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", "wrong"))
	e.post(osquery.PathConfig, fixture(t, "config.json", "NODE_KEY", "stale"))
	e.post(osquery.PathLog, []byte(`{"node_key": `))
	e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", key))
	e.sink.mu.Lock()
	e.sink.err = fmt.Errorf("full: %w", vigil.ErrUnavailable)
	e.sink.mu.Unlock()
	e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", key))

	// A held read shows in HeldReads until a query releases it.
	got := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(ctx, vkey, 30_000)
		got <- q
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Stats().HeldReads != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("HeldReads never reached 1: %+v", e.srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := e.srv.StartCampaign(ctx, "a", "SELECT 1", Target{Hosts: []string{vh.ID}})
	if err != nil {
		t.Fatal(err)
	}
	<-got
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: vkey, Queries: map[string][]map[string]string{c.ID: {}}})
	e.post(osquery.PathDistributedWrite, wb)

	want := Stats{Enrollments: 2, EnrollRefused: 1, UnknownNodeKeys: 1, BadRequests: 1, LogRequests: 1, LogLines: 4,
		LogUnavailable: 1, HeldReads: 0, QueriesDelivered: 1, ResultsRecorded: 1, CampaignsStarted: 1}
	// Which connections wait idle (idle.go) depends on the client's
	// connection pool; idle_test.go counts them.
	s := e.srv.Stats()
	s.IdleConns = 0
	if s != want {
		t.Errorf("Stats = %+v\nwant    %+v", s, want)
	}
}
