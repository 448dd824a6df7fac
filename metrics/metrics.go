// Package metrics exposes Vigil's counters to Prometheus: ingestion
// (lines accepted and rejected by reason, rows appended), the write-ahead
// log, detection (lag behind the store per table, run time and
// ingest-to-alert latency per rule, matches, alerts, dedupes,
// suppressions), agents (online, enrollments, log requests, held reads),
// live queries and outputs. Layers are read through function fields at
// scrape time, so this package holds no state of its own beyond the two
// histograms the detection engine feeds (it is a detect.Observer).
// cmd/vigil wires it and serves Handler; nothing else imports it.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/output"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/store"
)

// Options say where each layer's numbers come from; a nil field leaves
// that layer's metrics out.
type Options struct {
	Ingest  func() ingest.Stats
	Control func() control.Stats
	Rules   func() []detect.RuleStats
	Lag     func() []detect.TableLag
	Outputs func() []output.Stats
	// Agents returns how many enrolled hosts checked in recently (online)
	// and in all.
	Agents func(ctx context.Context) (online, total int, err error)
	// AgentDrops returns, per event source ("audit", "process_events",
	// ...), the events agents reported lost (the sum over hosts of each
	// host's latest counters). Agents report them in status log lines;
	// web.API.AgentDrops reads them from the event store.
	AgentDrops func(ctx context.Context) (map[string]float64, error)
	// Store returns the event store's size, row counts and result views.
	Store func(ctx context.Context) (store.Stats, error)
	// ScrapeTimeout bounds Agents, AgentDrops and Store; default 5 s.
	ScrapeTimeout time.Duration
	// LatencyBuckets are the detection latency histogram's buckets in
	// seconds; default 0.1 s to 5 min.
	LatencyBuckets []float64
}

// Metrics is the registry and the detection histograms.
type Metrics struct {
	opts    Options
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
	runtime *prometheus.HistogramVec
}

var _ detect.Observer = (*Metrics)(nil)

// New registers every metric in a fresh registry (with the Go runtime
// and process collectors).
func New(opts Options) *Metrics {
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 5 * time.Second
	}
	if len(opts.LatencyBuckets) == 0 {
		opts.LatencyBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300}
	}
	m := &Metrics{opts: opts, reg: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_detect_latency_seconds",
		Help:    "Time from an event's ingestion (ingested_at) to the alert it raised, per rule.",
		Buckets: opts.LatencyBuckets,
	}, []string{"rule_id"})
	m.runtime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_detect_rule_run_seconds",
		Help:    "Duration of one run of a rule over the events new since its watermark.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"rule_id"})
	m.reg.MustRegister(m.latency, m.runtime, &collector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RuleRun implements detect.Observer.
func (m *Metrics) RuleRun(ruleID string, took time.Duration, _ int) {
	m.runtime.WithLabelValues(ruleID).Observe(took.Seconds())
}

// AlertLatency implements detect.Observer.
func (m *Metrics) AlertLatency(ruleID string, l time.Duration) {
	m.latency.WithLabelValues(ruleID).Observe(l.Seconds())
}

type desc struct {
	name string
	d    *prometheus.Desc
	t    prometheus.ValueType
}

func counter(name, help string, labels ...string) desc {
	return desc{name, prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

func gauge(name, help string, labels ...string) desc {
	return desc{name, prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

// Every metric the collector reports; dashboards/ is checked against
// this list (Names).
var (
	ingestLines      = counter("vigil_ingest_lines_total", "Result log lines decoded, by outcome (accepted, rejected).", "outcome")
	ingestRejected   = counter("vigil_ingest_rejected_lines_total", "Result log lines rejected, by reason.", "reason")
	ingestAppended   = counter("vigil_ingest_appended_lines_total", "Lines of batches the event store acknowledged.")
	ingestRows       = counter("vigil_ingest_appended_rows_total", "Rows (events and raw results) the event store acknowledged.")
	ingestEvents     = counter("vigil_ingest_events_total", "Normalised events decoded.")
	ingestUnavail    = counter("vigil_ingest_unavailable_batches_total", "Batches refused with 'unavailable' (backpressure).")
	ingestStoreRej   = counter("vigil_ingest_store_rejected_batches_total", "Batches the event store refused as invalid.")
	ingestYielded    = counter("vigil_ingest_yielded_seconds_total", "Time the WAL drainer stood aside for live queries' answers (control's live-query priority).")
	ingestLastAppend = gauge("vigil_ingest_last_append_timestamp_seconds", "Unix time the store last acknowledged a batch.")
	walPending       = gauge("vigil_wal_pending_bytes", "Bytes in the write-ahead log not yet in the event store.")
	walSegments      = gauge("vigil_wal_segments", "Segment files of the write-ahead log.")
	walRecords       = counter("vigil_wal_records_total", "Records committed to the write-ahead log.")
	walCommits       = counter("vigil_wal_commits_total", "Group commits (fsyncs) of the write-ahead log.")
	walBytes         = counter("vigil_wal_bytes_total", "Bytes committed to the write-ahead log.")
	walFull          = counter("vigil_wal_full_total", "Appends refused because the write-ahead log was full.")
	storeHead        = gauge("vigil_store_head_seq", "Highest seq of an event table at the last detection run.", "table")
	detectLag        = gauge("vigil_detect_lag_events", "Events of a table not yet examined by every rule (head seq minus the lowest watermark).", "table")
	ruleMatches      = counter("vigil_detect_matches_total", "Rows a rule matched, before dedupe and suppression.", "rule_id")
	ruleAlerts       = counter("vigil_detect_alerts_total", "Alerts a rule opened.", "rule_id", "level")
	ruleDeduped      = counter("vigil_detect_deduped_total", "Matches folded into an open alert.", "rule_id")
	ruleSuppressed   = counter("vigil_detect_suppressed_total", "Matches silenced by a suppression.", "rule_id")
	ruleFailures     = counter("vigil_detect_rule_failures_total", "Runs of a rule whose query failed.", "rule_id")
	agentsDesc       = gauge("vigil_agents", "Enrolled agents by state (online: checked in recently).", "state")
	agentDrops       = gauge("vigil_agent_dropped_events", "Events agents reported lost, by event source (sum over hosts of their latest counters).", "source")
	agentEnroll      = counter("vigil_agent_enrollments_total", "Enrollments accepted.")
	agentRefused     = counter("vigil_agent_enroll_refused_total", "Enrollments refused (bad secret or rate limit).")
	agentBadKeys     = counter("vigil_agent_unknown_node_keys_total", "Requests with an unknown node key.")
	agentLogReqs     = counter("vigil_agent_log_requests_total", "Log requests by outcome (ok, unavailable, error).", "outcome")
	agentLogLines    = counter("vigil_agent_log_lines_total", "Log lines in accepted requests.")
	agentHeldReads   = gauge("vigil_agent_held_reads", "Agent requests held open now as reads (agents waiting for live queries): distributed/read, and writes and log sends held as the next read.")
	agentParked      = gauge("vigil_agent_parked_holds", "Of the held requests, those whose HTTP/1.1 connection is parked (waiting without a goroutine).")
	agentIdle        = gauge("vigil_agent_idle_conns", "Agent connections waiting between requests off net/http (a small goroutine, no buffers).")
	agentExtended    = counter("vigil_agent_holds_extended_total", "Parked holds whose end waited for a live query's priority window to close.")
	liveDelivered    = counter("vigil_live_queries_delivered_total", "Live queries handed to hosts.")
	liveResults      = counter("vigil_live_query_results_total", "Host answers to live queries recorded.")
	liveCampaigns    = counter("vigil_live_query_campaigns_total", "Live-query campaigns started.")
	outSent          = counter("vigil_output_sent_alerts_total", "Alerts an output delivered.", "output", "kind")
	outAttempts      = counter("vigil_output_attempts_total", "Deliveries attempted, retries included.", "output", "kind")
	outFailures      = counter("vigil_output_failures_total", "Delivery attempts that failed.", "output", "kind")
	outDead          = counter("vigil_output_dead_letters_total", "Batches dead-lettered after the last retry.", "output", "kind")
	outQueued        = gauge("vigil_output_queued_batches", "Batches waiting for an output.", "output", "kind")
	storeSize        = gauge("vigil_store_size_bytes", "Size of the event store on disk.")
	storeRows        = gauge("vigil_store_rows", "Rows in each table of the event store.", "table")
	storeViews       = gauge("vigil_store_result_views", "Per-query result views (results_<query>) in the event store.")
	storeViewsRef    = counter("vigil_store_result_views_refused_total", "Result rows whose query got no view because of the cap on views.")
)

var all = []desc{ingestLines, ingestRejected, ingestAppended, ingestRows, ingestEvents, ingestUnavail, ingestStoreRej, ingestYielded,
	ingestLastAppend, walPending, walSegments, walRecords, walCommits, walBytes, walFull, storeHead, detectLag,
	ruleMatches, ruleAlerts, ruleDeduped, ruleSuppressed, ruleFailures, agentsDesc, agentDrops, agentEnroll, agentRefused,
	agentBadKeys, agentLogReqs, agentLogLines, agentHeldReads, agentParked, agentIdle, agentExtended, liveDelivered, liveResults, liveCampaigns,
	outSent, outAttempts, outFailures, outDead, outQueued, storeSize, storeRows, storeViews, storeViewsRef}

type collector struct{ m *Metrics }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d.d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	o := c.m.opts
	if o.Ingest != nil {
		s := o.Ingest()
		emit(ingestLines, float64(s.LinesAccepted), "accepted")
		emit(ingestLines, float64(s.LinesRejected), "rejected")
		for reason, n := range s.Rejected {
			emit(ingestRejected, float64(n), reason)
		}
		emit(ingestAppended, float64(s.LinesAppended))
		emit(ingestRows, float64(s.RowsAppended))
		emit(ingestEvents, float64(s.EventsAccepted))
		emit(ingestUnavail, float64(s.Unavailable))
		emit(ingestStoreRej, float64(s.StoreRejected))
		emit(ingestYielded, s.Yielded.Seconds())
		if !s.LastAppended.IsZero() {
			emit(ingestLastAppend, float64(s.LastAppended.UnixNano())/1e9)
		}
		if w := s.WAL; w != nil {
			emit(walPending, float64(w.Pending))
			emit(walSegments, float64(w.Segments))
			emit(walRecords, float64(w.Records))
			emit(walCommits, float64(w.Commits))
			emit(walBytes, float64(w.Bytes))
			emit(walFull, float64(w.Full))
		}
	}
	if o.Lag != nil {
		for _, l := range o.Lag() {
			emit(storeHead, float64(l.Head), l.Table)
			emit(detectLag, float64(l.Lag), l.Table)
		}
	}
	if o.Rules != nil {
		for _, r := range o.Rules() {
			emit(ruleMatches, float64(r.Matches), r.RuleID)
			emit(ruleAlerts, float64(r.Alerts), r.RuleID, string(r.Level))
			emit(ruleDeduped, float64(r.Deduped), r.RuleID)
			emit(ruleSuppressed, float64(r.Suppressed), r.RuleID)
			emit(ruleFailures, float64(r.Failures), r.RuleID)
		}
	}
	if o.Control != nil {
		s := o.Control()
		emit(agentEnroll, float64(s.Enrollments))
		emit(agentRefused, float64(s.EnrollRefused))
		emit(agentBadKeys, float64(s.UnknownNodeKeys))
		emit(agentLogReqs, float64(s.LogRequests), "ok")
		emit(agentLogReqs, float64(s.LogUnavailable), "unavailable")
		emit(agentLogReqs, float64(s.LogErrors), "error")
		emit(agentLogLines, float64(s.LogLines))
		emit(agentHeldReads, float64(s.HeldReads))
		emit(agentParked, float64(s.ParkedHolds))
		emit(agentIdle, float64(s.IdleConns))
		emit(agentExtended, float64(s.HoldsExtended))
		emit(liveDelivered, float64(s.QueriesDelivered))
		emit(liveResults, float64(s.ResultsRecorded))
		emit(liveCampaigns, float64(s.CampaignsStarted))
	}
	if o.Agents != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.ScrapeTimeout)
		online, total, err := o.Agents(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(agentsDesc.d, err)
		} else {
			emit(agentsDesc, float64(online), "online")
			emit(agentsDesc, float64(total-online), "offline")
		}
	}
	if o.AgentDrops != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.ScrapeTimeout)
		drops, err := o.AgentDrops(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(agentDrops.d, err)
		}
		for source, n := range drops {
			emit(agentDrops, n, source)
		}
	}
	if o.Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.ScrapeTimeout)
		st, err := o.Store(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(storeSize.d, err)
		} else {
			emit(storeSize, float64(st.SizeBytes))
			for table, n := range st.Rows {
				emit(storeRows, float64(n), table)
			}
			emit(storeViews, float64(st.ResultViews.Views))
			emit(storeViewsRef, float64(st.ResultViews.Refused))
		}
	}
	if o.Outputs != nil {
		for _, s := range o.Outputs() {
			emit(outSent, float64(s.Sent), s.Name, s.Kind)
			emit(outAttempts, float64(s.Attempts), s.Name, s.Kind)
			emit(outFailures, float64(s.Failures), s.Name, s.Kind)
			emit(outDead, float64(s.DeadLettered), s.Name, s.Kind)
			emit(outQueued, float64(s.Queued), s.Name, s.Kind)
		}
	}
}

// Names lists every metric family this package can report (the
// histograms with their _bucket, _sum and _count series), for checking
// dashboards against.
func Names() []string {
	out := []string{}
	for _, h := range []string{"vigil_detect_latency_seconds", "vigil_detect_rule_run_seconds"} {
		out = append(out, h, h+"_bucket", h+"_sum", h+"_count")
	}
	for _, d := range all {
		out = append(out, d.name)
	}
	return out
}
