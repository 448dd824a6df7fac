package state

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vigilhq/vigil"
)

func benchDB(b *testing.B) *DB {
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "state.db"), nil)
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
func BenchmarkTouchHosts1000(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	seen := map[string]Seen{}
	for i := range 1000 {
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
