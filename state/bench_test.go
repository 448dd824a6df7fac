package state

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

func benchDB(b *testing.B) *DB { return benchDBJournal(b, true) }

// benchDBJournal opens the state with or without the answer journal.
func benchDBJournal(b *testing.B, journal bool) *DB {
	db, err := open(context.Background(), filepath.Join(b.TempDir(), "state.db"), nil, journal)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// Every agent request authenticates by node key: this is the hot read.
func BenchmarkHostByNodeKey(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	var keys []string
	for i := range 1000 {
		_, k, err := db.EnrollHost(ctx, vigil.Host{Identifier: fmt.Sprint("h", i)})
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, k)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := db.HostByNodeKey(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// Every distributed/read with nothing pending.
func BenchmarkTakePendingQueriesIdle(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	h, _, _ := db.EnrollHost(ctx, vigil.Host{Identifier: "h"})
	b.ResetTimer()
	for b.Loop() {
		if _, err := db.TakePendingQueries(ctx, h.ID, db.now()); err != nil {
			b.Fatal(err)
		}
	}
}

// Detection commits a rule's alerts with its watermark.
func BenchmarkCommitAlerts100(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	n := 0
	b.ResetTimer()
	for b.Loop() {
		alerts := make([]vigil.Alert, 100)
		for i := range alerts {
			n++
			alerts[i] = vigil.Alert{RuleID: "r", EventID: fmt.Sprint("e", n), HostID: "h", Fields: map[string]any{"pid": n}}
		}
		if _, err := db.CommitAlerts(ctx, "r", "t", int64(n), alerts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "alerts/s")
}

// Check-ins of 1,000 hosts in one batch.
func BenchmarkTouchHosts1000(b *testing.B) { benchTouchHosts(b, 1000) }

func benchTouchHosts(b *testing.B, n int) {
	db := benchDB(b)
	ctx := context.Background()
	seen := map[string]Seen{}
	for i := range n {
		h, _, _ := db.EnrollHost(ctx, vigil.Host{Identifier: fmt.Sprint("h", i)})
		seen[h.ID] = Seen{}
	}
	b.ResetTimer()
	for b.Loop() {
		now := db.now()
		for id := range seen {
			seen[id] = Seen{Time: now, RemoteAddr: "10.0.0.1:1"}
		}
		if err := db.TouchHosts(ctx, seen); err != nil {
			b.Fatal(err)
		}
	}
}

// A live query to 10,000 hosts: the campaign's creation, then every host
// answering at once (as long-polling agents do), until the last answer
// completes it.
// The answers are journaled, as the server records them (answers-ms);
// fold-ms is the time, after the last, until all are folded into SQLite.
func BenchmarkLiveQueryState10k(b *testing.B) { benchLiveQueryState(b, nil, true) }

// Without the journal: every answer waits for the SQLite writer (the path
// of campaigns the journal does not track).
func BenchmarkLiveQueryState10kWriter(b *testing.B) { benchLiveQueryState(b, nil, false) }

// The writer with SQLite's default page cache, to compare.
func BenchmarkLiveQueryState10kDefaultCache(b *testing.B) {
	defer func(kib int) { writeCacheKiB = kib }(writeCacheKiB)
	writeCacheKiB = 2000
	benchLiveQueryState(b, nil, false)
}

// The same with each answer's column order stored (columns_json).
func BenchmarkLiveQueryState10kColumns(b *testing.B) { benchLiveQueryState(b, []string{"one"}, true) }

func benchLiveQueryState(b *testing.B, columns []string, journal bool) {
	db := benchDBJournal(b, journal)
	ctx := context.Background()
	const n = 10_000
	var hosts []CampaignHost
	for i := range n {
		h, _, err := db.EnrollHost(ctx, vigil.Host{Identifier: fmt.Sprint("h", i), Hostname: fmt.Sprint("h", i)})
		if err != nil {
			b.Fatal(err)
		}
		hosts = append(hosts, CampaignHost{HostID: h.ID, Hostname: h.Hostname})
	}
	var create, mark, answer, fold time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Actor: "bench", Deadline: db.now().Add(time.Minute),
			Hosts: slices.Clone(hosts)}, &AuditEntry{Actor: "bench", Action: "query.start"})
		if err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		start = time.Now()
		ids := make([]string, len(hosts))
		for i, h := range hosts {
			ids[i] = h.HostID
		}
		if err := db.MarkSent(ctx, c.ID, ids, db.now()); err != nil {
			b.Fatal(err)
		}
		mark += time.Since(start)
		start = time.Now()
		var wg sync.WaitGroup
		var completed atomic.Int32
		for _, h := range hosts {
			wg.Go(func() {
				_, done, err := db.RecordResult(ctx, c.ID, h.HostID, Result{Status: StatusOK, Rows: []map[string]string{{"one": "1"}}, Columns: columns})
				if err != nil {
					b.Error(err)
				}
				if done {
					completed.Add(1)
				}
			})
		}
		wg.Wait()
		answer += time.Since(start)
		start = time.Now()
		if err := db.settle(ctx); err != nil {
			b.Fatal(err)
		}
		fold += time.Since(start)
		if completed.Load() != 1 {
			b.Fatalf("%d answers completed the campaign, want 1", completed.Load())
		}
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-ms")
	b.ReportMetric(float64(mark.Milliseconds())/float64(b.N), "mark-sent-ms")
	b.ReportMetric(float64(answer.Milliseconds())/float64(b.N), "answers-ms")
	b.ReportMetric(float64(fold.Milliseconds())/float64(b.N), "fold-ms")
}

// Check-ins of 10,000 hosts in one batch, as a flush after a live query.
func BenchmarkTouchHosts10k(b *testing.B) { benchTouchHosts(b, 10_000) }

// A live query to all of 10,000 hosts lists them first: every column
// (Hosts) against what the query needs (HostTargets).
func BenchmarkListHosts10k(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	details := `{"os_version":{"name":"Debian GNU/Linux","platform":"debian","version":"12 (bookworm)"},` +
		`"osquery_info":{"version":"5.12.1"},"system_info":{"hostname":"%s","uuid":"%s"},"vigil":{"long_poll":"true","capability":"2"}}`
	for i := range 10_000 {
		name := fmt.Sprint("host-", i)
		if _, _, err := db.EnrollHost(ctx, vigil.Host{Identifier: name, Hostname: name, UUID: fmt.Sprint("uuid-", i),
			Platform: "debian", OSVersion: "12", AgentName: "osquery", AgentVersion: "5.12.1",
			DetailsJSON: fmt.Sprintf(details, name, i)}); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		list func(context.Context) ([]vigil.Host, error)
	}{{"Hosts", db.Hosts}, {"HostTargets", db.HostTargets}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				hosts, err := c.list(ctx)
				if err != nil || len(hosts) != 10_000 {
					b.Fatalf("%d hosts, %v", len(hosts), err)
				}
			}
		})
	}
}
