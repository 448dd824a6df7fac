package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/metrics"
	"github.com/vigilhq/vigil/store"
)

func gather(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the series of family name whose labels
// include want (name=value pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

func TestMetricsReportEveryLayer(t *testing.T) {
	agentsErr := error(nil)
	m := metrics.New(metrics.Options{
		Ingest: func() ingest.Stats {
			return ingest.Stats{LinesAccepted: 10, LinesRejected: 3, Rejected: map[string]int64{"bad_json": 2, "too_large": 1},
				RowsAppended: 9, LastAppended: time.Unix(1700000000, 0), WAL: &wal.Stats{Pending: 4096, Segments: 2, Commits: 5}}
		},
		Control: func() control.Stats {
			return control.Stats{Enrollments: 4, LogLines: 50, HeldReads: 2, ParkedHolds: 1, HoldsExtended: 6, CampaignsStarted: 1}
		},
		Rules: func() []detect.RuleStats {
			return []detect.RuleStats{{RuleID: "r1", Level: "high", Matches: 7, Alerts: 3, Deduped: 2, Suppressed: 2, Failures: 1}}
		},
		Lag: func() []detect.TableLag {
			return []detect.TableLag{{Table: "process_creation", Head: 100, Watermark: 60, Lag: 40}}
		},
		Outputs:    func() []output.Stats { return []output.Stats{{Name: "soc", Kind: "webhook", Sent: 3, DeadLettered: 1}} },
		AgentDrops: func(context.Context) (map[string]float64, error) { return map[string]float64{"audit": 12}, nil },
		Store: func(context.Context) (store.Stats, error) {
			return store.Stats{SizeBytes: 1 << 20, Rows: map[string]int64{"process_creation": 42},
				ResultViews: store.ResultViewStats{Views: 3, Refused: 7}}, nil
		},
		Agents: func(context.Context) (int, int, error) {
			return 3, 5, agentsErr
		},
	})
	m.AlertLatency("r1", 1500*time.Millisecond)
	m.AlertLatency("r1", 20*time.Second)
	m.RuleRun("r1", 3*time.Millisecond, 7)
	f := gather(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vigil_ingest_lines_total", []string{"outcome", "rejected"}, 3},
		{"vigil_store_size_bytes", nil, 1 << 20},
		{"vigil_store_rows", []string{"table", "process_creation"}, 42},
		{"vigil_store_result_views", nil, 3},
		{"vigil_store_result_views_refused_total", nil, 7},
		{"vigil_ingest_rejected_lines_total", []string{"reason", "bad_json"}, 2},
		{"vigil_ingest_appended_rows_total", nil, 9},
		{"vigil_ingest_last_append_timestamp_seconds", nil, 1700000000},
		{"vigil_wal_pending_bytes", nil, 4096},
		{"vigil_wal_segments", nil, 2},
		{"vigil_detect_lag_events", []string{"table", "process_creation"}, 40},
		{"vigil_store_head_seq", []string{"table", "process_creation"}, 100},
		{"vigil_detect_alerts_total", []string{"rule_id", "r1", "level", "high"}, 3},
		{"vigil_detect_suppressed_total", []string{"rule_id", "r1"}, 2},
		{"vigil_detect_rule_failures_total", []string{"rule_id", "r1"}, 1},
		{"vigil_agents", []string{"state", "online"}, 3},
		{"vigil_agents", []string{"state", "offline"}, 2},
		{"vigil_agent_held_reads", nil, 2},
		{"vigil_agent_parked_holds", nil, 1},
		{"vigil_agent_holds_extended_total", nil, 6},
		{"vigil_agent_dropped_events", []string{"source", "audit"}, 12},
		{"vigil_live_query_campaigns_total", nil, 1},
		{"vigil_output_dead_letters_total", []string{"output", "soc"}, 1},
		{"vigil_detect_latency_seconds", []string{"rule_id", "r1"}, 2},
		{"vigil_detect_rule_run_seconds", []string{"rule_id", "r1"}, 1},
	} {
		if got := value(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := f["vigil_detect_latency_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleSum() != 21.5 {
		t.Errorf("latency sum %v", h.GetSampleSum())
	}
	// Every family gathered is one Names lists (dashboards rely on it).
	names := metrics.Names()
	for name := range f {
		if strings.HasPrefix(name, "vigil_") && !slices.Contains(names, name) {
			t.Errorf("metric %s missing from Names", name)
		}
	}
	// A failing source fails the scrape of its metric loudly.
	agentsErr = errors.New("state down")
	if _, err := m.Registry().Gather(); err == nil || !strings.Contains(err.Error(), "state down") {
		t.Errorf("gather with a failing source: %v", err)
	}
	agentsErr = nil

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `vigil_detect_lag_events{table="process_creation"} 40`) || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("exposition:\n%.2000s", body)
	}
}
