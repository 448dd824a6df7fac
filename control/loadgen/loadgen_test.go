package loadgen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/control/loadgen"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
)

type countingSink struct{ lines atomic.Int64 }

func (s *countingSink) Log(ctx context.Context, h vigil.Host, logType string, lines []json.RawMessage) error {
	s.lines.Add(int64(len(lines)))
	return nil
}

func TestRunAgainstControl(t *testing.T) {
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sink := &countingSink{}
	srv, err := control.New(control.Options{State: db, Ingest: sink, EnrollSecret: "loadgen-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bundle, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = bundle.TLSConfig()
	hs.StartTLS()
	defer hs.Close()

	const agents = 20
	// Once the fleet is enrolled, send it a live query; the run ends when
	// every long-polling agent has answered and some logs came in.
	stop := make(chan struct{})
	campaign := make(chan control.Campaign, 1)
	go func() {
		defer close(stop)
		for {
			if hosts, _ := db.Hosts(ctx); len(hosts) == agents {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c, err := srv.StartCampaign(ctx, "bench", "SELECT 42", control.Target{All: true})
		if err != nil {
			t.Error(err)
			return
		}
		events, cancel := srv.Subscribe(c.ID)
		defer cancel()
		for range events {
		}
		for sink.lines.Load() < 100 {
			time.Sleep(20 * time.Millisecond)
		}
		campaign <- c
	}()
	rep, err := loadgen.Run(ctx, loadgen.Options{URL: hs.URL, RootCAs: bundle.CertPool(), EnrollSecret: "loadgen-secret-0123456789",
		Agents: agents, Duration: time.Minute, LogInterval: 200 * time.Millisecond, LinesPerLog: 5, LongPoll: true, Stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	if rep.Enrolled != agents || len(rep.FirstErrors) != 0 {
		t.Errorf("enrolled %d, errors %v", rep.Enrolled, rep.FirstErrors)
	}
	if rep.LinesSent < 100 || rep.LinesSent != sink.lines.Load() {
		t.Errorf("report says %d lines, server received %d", rep.LinesSent, sink.lines.Load())
	}
	if rep.Endpoints["/api/v1/osquery/enroll"].Count != agents || rep.Endpoints["/api/v1/osquery/log"].Count == 0 {
		t.Errorf("endpoint stats %+v", rep.Endpoints)
	}
	select {
	case c := <-campaign:
		got, err := db.GetCampaign(ctx, c.ID)
		if err != nil || !got.Done || got.Summary.OK != agents {
			t.Errorf("campaign over the fleet: %+v %v", got.Summary, err)
		}
		if rep.QueriesAnswered != agents {
			t.Errorf("answered %d, want %d", rep.QueriesAnswered, agents)
		}
	default:
		t.Error("the run ended before the live query was answered by every agent")
	}
	if !strings.Contains(rep.String(), "/api/v1/osquery/distributed/read") {
		t.Errorf("report misses endpoints:\n%s", rep)
	}
}

func TestRunFailsWhenNoAgentEnrolls(t *testing.T) {
	hs := httptest.NewUnstartedServer(nil)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	hs.StartTLS()
	defer hs.Close()
	_, err := loadgen.Run(context.Background(), loadgen.Options{URL: hs.URL, EnrollSecret: "x", Agents: 2, Duration: time.Second})
	if err == nil {
		t.Fatal("no error although nothing could enroll")
	}
}

// TestScale is opt-in (VIGIL_LOADGEN_AGENTS=n): a fleet of n long-polling
// agents against an in-process control server, with one live query to all
// of them mid-run; it logs the report and how long the query took.
func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VIGIL_LOADGEN_AGENTS"))
	if n <= 0 {
		t.Skip("set VIGIL_LOADGEN_AGENTS=n to run a fleet of n simulated agents")
	}
	ctx := context.Background()
	db, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sink := &countingSink{}
	srv, err := control.New(control.Options{State: db, Ingest: sink, EnrollSecret: "loadgen-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bundle, _ := pki.Ensure(t.TempDir(), nil)
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = bundle.TLSConfig()
	hs.StartTLS()
	defer hs.Close()
	done := make(chan string, 1)
	go func() {
		for {
			if hosts, _ := db.Hosts(ctx); len(hosts) == n {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		start := time.Now()
		c, err := srv.StartCampaign(ctx, "bench", "SELECT 42", control.Target{All: true})
		if err != nil {
			done <- err.Error()
			return
		}
		ch, cancel := srv.Subscribe(c.ID)
		defer cancel()
		var last control.CampaignEvent
		for ev := range ch {
			last = ev
		}
		done <- fmt.Sprintf("live query to %d hosts: done in %v (%+v)", n, time.Since(start), last.Summary)
	}()
	rep, err := loadgen.Run(ctx, loadgen.Options{URL: hs.URL, RootCAs: bundle.CertPool(), EnrollSecret: "loadgen-secret-0123456789",
		Agents: n, Duration: 15 * time.Second, LogInterval: time.Second, LinesPerLog: 20, LongPoll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	select {
	case s := <-done:
		t.Log(s)
	case <-time.After(30 * time.Second):
		t.Error("live query did not finish")
	}
}
