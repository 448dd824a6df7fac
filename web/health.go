package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/state"
)

// statusQuery is the query name ingest stores agents' status log lines
// under (ingest.StatusQuery; a test keeps the two equal).
const statusQuery = "__status"

// eventCountersPrefix starts the agent's periodic counters status line.
const eventCountersPrefix = "event counters: "

// StatusLine is one status log line an agent sent (osquery's status log:
// severity 0 info, 1 warning, 2 error).
type StatusLine struct {
	Time     time.Time `json:"time"`
	Severity int       `json:"severity"`
	Message  string    `json:"message"`
	File     string    `json:"file,omitempty"`
	Line     int       `json:"line,omitempty"`
}

// SourceCounters are the counters of one event source or event table as
// the agent last reported them ("audit", "process_events", ...).
type SourceCounters struct {
	Source   string            `json:"source"`
	Counters map[string]uint64 `json:"counters"`
	Inactive string            `json:"inactive,omitempty"` // why the source is not running
}

// HostHealth answers GET /api/v1/hosts/{id}/health.
type HostHealth struct {
	HostID     string           `json:"host_id"`
	Online     bool             `json:"online"`
	LastSeen   time.Time        `json:"last_seen"`
	CountersAt time.Time        `json:"counters_at,omitzero"` // when the counters were reported
	Counters   []SourceCounters `json:"counters"`
	Lost       uint64           `json:"lost"` // events lost or dropped, summed over the latest counters
	Lines      []StatusLine     `json:"lines"`
}

// maxHealthLines bounds the status lines a health answer carries.
const maxHealthLines = 200

// hostHealth serves the agent's health from what it reported: the latest
// event counters (drops, kernel losses, inactive sources) and its recent
// warnings and errors, read from the event store's raw results.
func (a *API) hostHealth(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	if a.opts.Events == nil {
		a.unavailable(w, "the event store")
		return
	}
	host, err := a.db.Host(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, ok := queryLimit(w, r, 50, maxHealthLines)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	out := HostHealth{HostID: host.ID, Online: a.ctl.Online(host), LastSeen: host.LastSeen, Counters: []SourceCounters{}, Lines: []StatusLine{}}
	const q = `SELECT event_time, "columns" FROM query_results WHERE host_id = ? AND query_name = ? ORDER BY event_time DESC, seq DESC LIMIT `
	rs, err := a.opts.Events.Query(ctx, q+strconv.Itoa(limit), host.ID, statusQuery)
	if err != nil {
		a.fail(w, r, fmt.Errorf("reading status lines of %s: %w", host.ID, err))
		return
	}
	for _, row := range rs.Rows {
		if l, ok := statusLine(row); ok {
			out.Lines = append(out.Lines, l)
		}
	}
	// The counters line comes every few minutes among other lines: find
	// the latest on its own.
	rs, err = a.opts.Events.Query(ctx, `SELECT event_time, "columns" FROM query_results WHERE host_id = ? AND query_name = ? AND "columns" LIKE ? ORDER BY event_time DESC, seq DESC LIMIT 1`,
		host.ID, statusQuery, "%"+eventCountersPrefix+"%")
	if err != nil {
		a.fail(w, r, fmt.Errorf("reading event counters of %s: %w", host.ID, err))
		return
	}
	if len(rs.Rows) == 1 {
		if l, ok := statusLine(rs.Rows[0]); ok {
			out.CountersAt = l.Time
			out.Counters, out.Lost = parseEventCounters(l.Message)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func statusLine(row []any) (StatusLine, bool) {
	if len(row) != 2 {
		return StatusLine{}, false
	}
	var l StatusLine
	l.Time, _ = row[0].(time.Time)
	s, _ := row[1].(string)
	var cols map[string]string
	if json.Unmarshal([]byte(s), &cols) != nil {
		return StatusLine{}, false
	}
	l.Severity, _ = strconv.Atoi(cols["severity"])
	l.Line, _ = strconv.Atoi(cols["line"])
	l.Message, l.File = cols["message"], cols["filename"]
	return l, true
}

// lossCounters are the counters that mean events were lost.
var lossCounters = map[string]bool{"kernel_lost": true, "socket_overflows": true, "queue_dropped": true, "sequence_gaps": true, "dropped": true}

// parseEventCounters reads the agent's counters line:
//
//	[event rows lost since last report: N; ]event counters: SOURCE k=v k=v; SOURCE inactive (why); ...
//
// Parts or values it does not understand are skipped: the line is for
// people first.
func parseEventCounters(msg string) ([]SourceCounters, uint64) {
	_, body, ok := strings.Cut(msg, eventCountersPrefix)
	if !ok {
		return []SourceCounters{}, 0
	}
	out := []SourceCounters{}
	var lost uint64
	for _, part := range strings.Split(body, "; ") {
		fields := strings.Fields(part)
		if len(fields) == 0 {
			continue
		}
		sc := SourceCounters{Source: fields[0], Counters: map[string]uint64{}}
		if len(fields) > 1 && fields[1] == "inactive" {
			why := strings.TrimSpace(strings.TrimPrefix(part, fields[0]+" inactive"))
			sc.Inactive = strings.TrimSuffix(strings.TrimPrefix(why, "("), ")")
			if sc.Inactive == "" {
				sc.Inactive = "inactive"
			}
			out = append(out, sc)
			continue
		}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			sc.Counters[k] = n
			if lossCounters[k] {
				lost += n
			}
		}
		if len(sc.Counters) > 0 {
			out = append(out, sc)
		}
	}
	return out, lost
}

// Bounds of AgentDrops.
const (
	// DropsWindow is how far back AgentDrops looks for counters lines:
	// agents report every 5 minutes (agent.DefaultEventStatsInterval), so
	// this holds each reporting host's latest; hosts silent longer are
	// left out of the sums.
	DropsWindow = 15 * time.Minute
	// dropsCacheFor spares the store a scan per Prometheus scrape:
	// counters change every few minutes, scrapes come every few seconds.
	dropsCacheFor = 30 * time.Second
	maxDropsLines = 200_000
)

// dropsCache is the last AgentDrops answer.
type dropsCache struct {
	mu  sync.Mutex
	at  time.Time
	val map[string]float64
}

// AgentDrops sums, per event source ("audit", "process_events", ...),
// the events agents reported lost (kernel losses, overflows, drops,
// sequence gaps) in each host's latest counters line of the last
// DropsWindow. Counters are cumulative since the agent started, so the
// sum is a gauge: it falls when an agent restarts. Sources every host
// reports without loss are present with 0, so their series exist. It is
// metrics.Options.AgentDrops (no per-host label: the hosts page has
// those); the answer is cached for 30 seconds.
func (a *API) AgentDrops(ctx context.Context) (map[string]float64, error) {
	if a.opts.Events == nil {
		return nil, fmt.Errorf("agent drop counters: no event store")
	}
	a.drops.mu.Lock()
	defer a.drops.mu.Unlock()
	now := a.now()
	if a.drops.val != nil && now.Sub(a.drops.at) < dropsCacheFor {
		return a.drops.val, nil
	}
	rs, err := a.opts.Events.Query(ctx, `SELECT host_id, event_time, "columns" FROM query_results
		WHERE query_name = ? AND event_time > ? AND "columns" LIKE ? ORDER BY event_time DESC LIMIT `+strconv.Itoa(maxDropsLines),
		statusQuery, now.Add(-DropsWindow).UTC(), "%"+eventCountersPrefix+"%")
	if err != nil {
		return nil, fmt.Errorf("reading agents' event counters: %w", err)
	}
	out := map[string]float64{}
	seen := map[string]bool{}
	for _, row := range rs.Rows {
		if len(row) != 3 {
			continue
		}
		host, _ := row[0].(string)
		if seen[host] {
			continue // an older line of a host already counted
		}
		l, ok := statusLine(row[1:])
		if !ok {
			continue
		}
		seen[host] = true
		counters, _ := parseEventCounters(l.Message)
		for _, sc := range counters {
			lost := uint64(0)
			for k, n := range sc.Counters {
				if lossCounters[k] {
					lost += n
				}
			}
			if sc.Inactive == "" {
				out[sc.Source] += float64(lost)
			}
		}
	}
	a.drops.at, a.drops.val = now, out
	return out, nil
}
