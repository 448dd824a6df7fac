package control

import "sync/atomic"

// Stats are the control plane's counters since start, for metrics (wire
// them to Prometheus with CounterFunc/GaugeFunc in cmd/vigil) and the
// console. Counters only grow; HeldReads is the current number of held
// distributed/read requests.
type Stats struct {
	Enrollments      int64 `json:"enrollments"`
	EnrollRefused    int64 `json:"enroll_refused"`    // bad secret or rate-limited
	UnknownNodeKeys  int64 `json:"unknown_node_keys"` // answered node_invalid
	BadRequests      int64 `json:"bad_requests"`      // 4xx for malformed or oversized bodies
	LogRequests      int64 `json:"log_requests"`      // accepted by the sink
	LogLines         int64 `json:"log_lines"`         // in accepted requests
	LogUnavailable   int64 `json:"log_unavailable"`   // 503: the sink asked to retry
	LogErrors        int64 `json:"log_errors"`        // 500: the sink failed
	HeldReads        int64 `json:"held_reads"`        // requests held open now as reads (distributed/read, and writes and logs held as the next read)
	ParkedHolds      int64 `json:"parked_holds"`      // of those, parked off net/http (park.go)
	IdleConns        int64 `json:"idle_conns"`        // connections waiting off net/http between requests (idle.go)
	HoldsExtended    int64 `json:"holds_extended"`    // parked holds whose end waited for a live query's priority window
	QueriesDelivered int64 `json:"queries_delivered"` // live queries handed to hosts
	ResultsRecorded  int64 `json:"results_recorded"`  // host answers stored
	CampaignsStarted int64 `json:"campaigns_started"` //
	CarveBlocks      int64 `json:"carve_blocks"`      // blocks stored
}

type counters struct {
	enrollments, enrollRefused, unknownNodeKeys, badRequests    atomic.Int64
	logRequests, logLines, logUnavailable, logErrors, heldReads atomic.Int64
	queriesDelivered, resultsRecorded, campaignsStarted         atomic.Int64
	carveBlocks, parkedHolds, idleConns, holdsExtended          atomic.Int64
}

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Enrollments: c.enrollments.Load(), EnrollRefused: c.enrollRefused.Load(), UnknownNodeKeys: c.unknownNodeKeys.Load(),
		BadRequests: c.badRequests.Load(), LogRequests: c.logRequests.Load(), LogLines: c.logLines.Load(),
		LogUnavailable: c.logUnavailable.Load(), LogErrors: c.logErrors.Load(), HeldReads: c.heldReads.Load(), ParkedHolds: c.parkedHolds.Load(),
		IdleConns: c.idleConns.Load(), HoldsExtended: c.holdsExtended.Load(),
		QueriesDelivered: c.queriesDelivered.Load(), ResultsRecorded: c.resultsRecorded.Load(),
		CampaignsStarted: c.campaignsStarted.Load(), CarveBlocks: c.carveBlocks.Load(),
	}
}
