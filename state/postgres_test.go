package state

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state/pgtest"
)

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                                   `SELECT 1`,
		`SELECT ? , ?`:                               `SELECT $1 , $2`,
		`WHERE a = '?' AND b = ? AND "c?" = ?`:       `WHERE a = '?' AND b = $1 AND "c?" = $2`,
		`AS $$ BEGIN ? END $$; SELECT ?`:             `AS $$ BEGIN ? END $$; SELECT $1`,
		`INSERT INTO t (a, b) VALUES (?, ?) ON ? DO`: `INSERT INTO t (a, b) VALUES ($1, $2) ON $3 DO`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRebind: for text without $, turning $1..$n back into ? gives the
// input back, and placeholders are numbered in order.
func FuzzRebind(f *testing.F) {
	f.Add(`SELECT ? FROM t WHERE a = '?' AND b = ?`)
	f.Add(`"?" '?' ? ?`)
	f.Add(`'unterminated ? ?`)
	f.Fuzz(func(t *testing.T, q string) {
		if strings.Contains(q, "$") {
			t.Skip("input has $")
		}
		out := rebind(q)
		back := out
		for n := 1; strings.Contains(back, "$"); n++ {
			p := fmt.Sprintf("$%d", n)
			i := strings.Index(back, p)
			if i < 0 {
				t.Fatalf("rebind(%q) = %q: %s missing or out of order", q, out, p)
			}
			back = back[:i] + "?" + back[i+len(p):]
		}
		if back != q {
			t.Fatalf("rebind(%q) = %q, maps back to %q", q, out, back)
		}
	})
}

func TestPostgresAnnounceListen(t *testing.T) {
	url := pgtest.URL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !a.Shared() {
		t.Fatal("a PostgreSQL state is not Shared")
	}
	got := make(chan string, 10000)
	ready := make(chan struct{}, 1)
	go b.Listen(ctx, func(topic, id string) {
		if topic == "" {
			ready <- struct{}{}
			return
		}
		got <- topic + "/" + id
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("listener never connected")
	}
	// Many ids: split over several notifications, all delivered.
	ids := make([]string, 600)
	for i := range ids {
		ids[i] = NewID()
	}
	if err := a.Announce(ctx, TopicHost, ids...); err != nil {
		t.Fatal(err)
	}
	if err := b.Announce(ctx, TopicCampaign, "own"); err != nil { // b's own: not delivered to b
		t.Fatal(err)
	}
	a.Announce(ctx, TopicCampaign, "c1")
	deadline := time.After(10 * time.Second)
	seen := map[string]bool{}
	for len(seen) < len(ids)+1 {
		select {
		case s := <-got:
			if s == "campaign/own" {
				t.Error("a replica received its own announcement")
			}
			seen[s] = true
		case <-deadline:
			t.Fatalf("received %d of %d announcements", len(seen), len(ids)+1)
		}
	}
	if !seen["campaign/c1"] || !seen["host/"+ids[599]] {
		t.Error("announcement missing")
	}
}

func TestPostgresConcurrentOpenMigratesOnce(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(context.Background(), url, nil)
			if err != nil {
				errs <- err
				return
			}
			db.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("replica failed to open: %v", err)
	}
}

// Hosts answering at once through different replicas complete the
// campaign exactly once.
func TestPostgresConcurrentAnswersComplete(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	var dbs []*DB
	for range 3 {
		db, err := Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	var hosts []CampaignHost
	for i := range 30 {
		h, _, err := dbs[0].EnrollHost(ctx, vigil.Host{Identifier: fmt.Sprint("h", i)})
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, CampaignHost{HostID: h.ID})
	}
	c, err := dbs[0].CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Deadline: time.Now().Add(time.Minute), Hosts: hosts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	completions := 0
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, done, err := dbs[i%3].RecordResult(ctx, c.ID, h.HostID, Result{Status: StatusOK})
			if err != nil {
				t.Error(err)
			}
			if done {
				mu.Lock()
				completions++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, _ := dbs[1].GetCampaign(ctx, c.ID)
	if completions != 1 || !got.Done || got.Summary.OK != 30 {
		t.Errorf("completions %d, campaign %+v", completions, got.Summary)
	}
}
