package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/internal/failrate"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	NodeInvalid bool   `json:"node_invalid,omitempty"`
	Error       string `json:"error"`
}

// fail answers an error: requestErrors with their status and message,
// anything else as a 500 whose detail stays in our log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var re *requestError
	if errors.As(err, &re) {
		s.stats.badRequests.Add(1)
		s.logger.Info("bad request", "path", r.URL.Path, "remote", r.RemoteAddr, "err", re.msg)
		writeJSON(w, re.status, errorBody{Error: re.msg})
		return
	}
	s.logger.Error("request failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error; see the server log"})
}

// nodeKey takes the node key from the body, or else from the
// "Authorization: NodeKey <k>" header osquery also sends.
func nodeKey(r *http.Request, fromBody string) string {
	if fromBody != "" {
		return fromBody
	}
	if h := r.Header.Get("Authorization"); len(h) > 8 && strings.EqualFold(h[:8], "NodeKey ") {
		return strings.TrimSpace(h[8:])
	}
	return ""
}

// readNode reads a request body of at most limit bytes into req, then
// resolves its node key (key points into req); ok false means the answer
// has been written.
func (s *Server) readNode(w http.ResponseWriter, r *http.Request, limit int64, req any, key *string) (vigil.Host, bool) {
	if err := readJSON(r, limit, req); err != nil {
		s.fail(w, r, err)
		return vigil.Host{}, false
	}
	return s.authenticate(w, r, *key)
}

// authenticate resolves the node key; ok false means the answer (osquery's
// node_invalid, which makes the agent enroll again) has been written.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, key string) (vigil.Host, bool) {
	h, err := s.db.HostByNodeKey(r.Context(), nodeKey(r, key))
	if errors.Is(err, vigil.ErrNotFound) {
		s.stats.unknownNodeKeys.Add(1)
		s.logger.Info("unknown node key", "path", r.URL.Path, "remote", r.RemoteAddr)
		// 200, as osquery expects: it reads node_invalid and re-enrolls.
		writeJSON(w, http.StatusOK, osquery.NodeInvalidResponse{NodeInvalid: true})
		return vigil.Host{}, false
	}
	if err != nil {
		s.fail(w, r, err)
		return vigil.Host{}, false
	}
	s.touch(h.ID, r.RemoteAddr)
	if iw, ok := w.(*idleWriter); ok && h.LongPoll {
		// Its next request (a hold) comes at once: waiting for it off
		// net/http would only put the accept loop in its way (idle.go).
		iw.stay = true
	}
	return s.withLastSeen(h), true
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req osquery.EnrollRequest
	if err := readJSON(r, s.opts.MaxOtherBodyBytes, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	src := failrate.SourceIP(r.RemoteAddr)
	if s.badAuth.Blocked(src, s.now()) {
		s.stats.enrollRefused.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(int(s.opts.BadSecretWindow.Seconds())))
		writeJSON(w, http.StatusTooManyRequests, errorBody{NodeInvalid: true, Error: "too many failed enrollments from this address; retry later"})
		return
	}
	ok, err := s.checkEnrollSecret(r.Context(), req.EnrollSecret)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !ok {
		s.stats.enrollRefused.Add(1)
		n := s.badAuth.Fail(src, s.now())
		s.logger.Warn("enrollment with an invalid enroll secret", "remote", r.RemoteAddr, "host_identifier", req.HostIdentifier, "failures", n)
		if n == 1 || n == s.opts.BadSecretLimit {
			if err := s.db.Audit(r.Context(), state.AuditEntry{Actor: "anonymous", Action: "enroll.bad_secret", Target: req.HostIdentifier,
				Source: r.RemoteAddr, Detail: map[string]any{"failures": n}}); err != nil {
				s.logger.Error("auditing a bad enroll secret", "err", err)
			}
		}
		writeJSON(w, http.StatusUnauthorized, errorBody{NodeInvalid: true, Error: "invalid enroll secret"})
		return
	}
	if strings.TrimSpace(req.HostIdentifier) == "" {
		s.fail(w, r, badRequest("host_identifier is empty"))
		return
	}
	h := hostFromEnroll(req)
	h.RemoteAddr = r.RemoteAddr
	h.LastSeen = s.now()
	h, key, err := s.db.EnrollHost(r.Context(), h)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.touch(h.ID, r.RemoteAddr)
	s.stats.enrollments.Add(1)
	s.logger.Info("host enrolled", "host_id", h.ID, "host_identifier", h.Identifier, "hostname", h.Hostname,
		"agent", h.AgentName, "long_poll", h.LongPoll, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, osquery.EnrollResponse{NodeKey: key})
}

// hostFromEnroll reads what osquery's host_details (os_version,
// osquery_info, system_info, platform_info) and Vigil's "vigil" section
// say about the host.
func hostFromEnroll(req osquery.EnrollRequest) vigil.Host {
	d := req.HostDetails
	get := func(table, col string) string { return strings.TrimSpace(d[table][col]) }
	h := vigil.Host{
		Identifier: strings.TrimSpace(req.HostIdentifier),
		UUID:       get("system_info", "uuid"),
		Hostname:   get("system_info", "hostname"),
		Platform:   get("os_version", "platform"),
		OSVersion:  strings.TrimSpace(get("os_version", "name") + " " + get("os_version", "version")),
		AgentName:  "osquery",
	}
	if h.Hostname == "" {
		h.Hostname = h.Identifier
	}
	if h.Platform == "" {
		h.Platform = get("osquery_info", "build_platform")
	}
	h.AgentVersion = get("osquery_info", "version")
	if v, ok := d["vigil"]; ok {
		h.AgentName = "vigil-agent"
		if ver := strings.TrimSpace(v["version"]); ver != "" {
			h.AgentVersion = ver
		}
		h.LongPoll = v["long_poll"] == "true"
	}
	if b, err := json.Marshal(d); err == nil && d != nil {
		h.DetailsJSON = string(b)
	}
	return h
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	var req osquery.NodeRequest
	h, ok := s.readNode(w, r, s.opts.MaxOtherBodyBytes, &req, &req.NodeKey)
	if !ok {
		return
	}
	cfg, _, err := s.EffectiveConfig(r.Context(), h)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.indexConfig(cfg)
	cfg.NodeInvalid = false
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	var req osquery.LogRequest
	h, ok := s.readLog(w, r, &req)
	if !ok {
		return
	}
	if req.LogType != osquery.LogTypeResult && req.LogType != osquery.LogTypeStatus {
		s.fail(w, r, badRequest("log_type %q: want %q or %q", req.LogType, osquery.LogTypeResult, osquery.LogTypeStatus))
		return
	}
	if len(req.Data) > 0 && s.opts.Ingest != nil {
		if err := s.opts.Ingest.Log(r.Context(), h, req.LogType, req.Data); err != nil {
			if errors.Is(err, vigil.ErrUnavailable) {
				s.stats.logUnavailable.Add(1)
				s.logger.Warn("log sink unavailable; agent asked to retry", "host_id", h.ID, "lines", len(req.Data), "err", err)
				w.Header().Set("Retry-After", "5")
				writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "ingestion is temporarily unavailable; retry later"})
				return
			}
			if errors.Is(err, vigil.ErrInvalid) {
				s.fail(w, r, badRequest("%v", err))
				return
			}
			s.stats.logErrors.Add(1)
			s.fail(w, r, fmt.Errorf("ingesting %d %s lines of host %s: %w", len(req.Data), req.LogType, h.ID, err))
			return
		}
	}
	s.stats.logRequests.Add(1)
	s.stats.logLines.Add(int64(len(req.Data)))
	// Vigil's long-polling agent asks for its log send to be held as its
	// next read: its held read ends when a log is due, and a host sending
	// a log would otherwise get a live query only after that log's answer
	// and one more read.
	if h.LongPoll && req.VigilWait > 0 {
		s.holdAsRead(w, r, h, req.VigilWait)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) handleDistributedRead(w http.ResponseWriter, r *http.Request) {
	var req osquery.NodeRequest
	h, ok := s.readNode(w, r, s.opts.MaxOtherBodyBytes, &req, &req.NodeKey)
	if !ok {
		return
	}
	if s.park(w, r, h, req.VigilWait, false) {
		return
	}
	queries, err := s.hold(w, r, h, req.VigilWait)
	if err != nil {
		if r.Context().Err() == nil {
			s.fail(w, r, err)
		}
		return
	}
	writeJSON(w, http.StatusOK, osquery.DistributedReadResponse{Queries: queries})
}

// recordWrite records the answer a distributed/write gives to query id.
func (s *Server) recordWrite(ctx context.Context, id string, h vigil.Host, req *osquery.DistributedWriteRequest, now time.Time) error {
	res := state.Result{Status: state.StatusOK, Rows: req.Queries[id], Columns: req.Columns[id], Time: now}
	// Before osquery 2.1.2 there were no statuses: rows mean success.
	if code := req.Statuses[id]; code != 0 {
		res = state.Result{Status: state.StatusError, Error: req.Messages[id], Time: now}
		if res.Error == "" {
			res.Error = "query failed with status " + strconv.FormatInt(int64(code), 10)
		}
	}
	return s.recordResult(ctx, id, h, res)
}

// hold answers the host's pending queries, holding the request up to
// waitMS (capability 1, only for agents that announced it) when there are
// none.
func (s *Server) hold(w http.ResponseWriter, r *http.Request, h vigil.Host, waitMS int) (map[string]string, error) {
	var wait time.Duration
	if h.LongPoll && waitMS > 0 {
		wait = holdFor(waitMS)
		// The server's WriteTimeout must not cut a held request short.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 30*time.Second))
	}
	if wait > 0 {
		s.stats.heldReads.Add(1)
	}
	queries, err := s.pendingFor(r.Context(), h.ID, wait)
	if wait > 0 {
		s.endHold(h.ID, r.RemoteAddr, len(queries))
	} else {
		s.stats.queriesDelivered.Add(int64(len(queries)))
	}
	if err != nil {
		return nil, err
	}
	if queries == nil {
		queries = map[string]string{}
	}
	return queries, nil
}

// holdFor is how long a hold the agent asked for waitMS lasts.
func holdFor(waitMS int) time.Duration {
	return min(time.Duration(waitMS)*time.Millisecond, MaxLongPoll)
}

// endHold counts a hold over, held or parked, that delivered n queries.
func (s *Server) endHold(hostID, remote string, n int) {
	s.stats.queriesDelivered.Add(int64(n))
	// A host holding a read was there all along: count it seen now too,
	// or a long wait would age its last check-in.
	s.touch(hostID, remote)
	s.stats.heldReads.Add(-1)
}

// pendingFor returns the queries waiting for a host, waiting up to wait
// for one to arrive when there are none.
func (s *Server) pendingFor(ctx context.Context, hostID string, wait time.Duration) (map[string]string, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		// Take the channel before looking, so a query started between the
		// look and the wait still wakes us. Only held reads register: the
		// channel tells StartCampaign the host waits here.
		var woken <-chan struct{}
		if wait > 0 {
			woken = s.notify.channel(hostID)
		}
		q, err := s.lookPending(ctx, hostID)
		if err != nil || len(q) > 0 || wait <= 0 {
			return q, err
		}
		select {
		case <-woken:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stop:
			return nil, nil
		}
	}
}

// lookPending takes the queries waiting for a host: from memory, or from
// the state when it may hold some.
func (s *Server) lookPending(ctx context.Context, hostID string) (map[string]string, error) {
	now := s.now()
	if q := s.local.take(hostID, now); len(q) > 0 {
		return q, nil
	}
	var q map[string]string
	var err error
	if ask, gen := s.hint.check(hostID); ask {
		q, err = s.db.TakePendingQueries(ctx, hostID, now)
		if err == nil && len(q) == 0 {
			s.hint.cleanIf(hostID, gen)
		}
	}
	if err == nil && len(q) > 0 {
		for cid := range q {
			s.local.forgetHost(cid, hostID)
		}
		q = s.local.drop(hostID, q)
	}
	return q, err
}

func (s *Server) handleDistributedWrite(w http.ResponseWriter, r *http.Request) {
	var req osquery.DistributedWriteRequest
	h, ok := s.readNode(w, r, s.opts.MaxBodyBytes, &req, &req.NodeKey)
	if !ok {
		return
	}
	now := s.now()
	// Every query id the write names, in queries or statuses, once.
	for id := range req.Queries {
		if err := s.recordWrite(r.Context(), id, h, &req, now); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	for id := range req.Statuses {
		if _, done := req.Queries[id]; done {
			continue
		}
		if err := s.recordWrite(r.Context(), id, h, &req, now); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	// While a live query has the cores (priority.go), its answers are
	// acknowledged when it completes (or its window ends): they are
	// recorded already, and what an agent does once acknowledged (its next
	// hold, the logs it kept back to answer) would take cores that the
	// hosts still answering need.
	if ch := s.answerPriority(&req); ch != nil {
		// Each write waits at most that long: campaigns started one after
		// another keep the window itself open.
		t := time.NewTimer(s.opts.LiveQueryPriority)
		select {
		case <-ch:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
	}
	// Vigil's long-polling agent asks for the write to be held as its next
	// read; osquery gets {} as it expects.
	if h.LongPoll && req.VigilWait > 0 {
		s.holdAsRead(w, r, h, req.VigilWait)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// holdAsRead answers a distributed/write or a log whose agent asked for it
// to be held as its next read: the status goes out first (it tells the
// agent its answers or lines are recorded), then the hold, and the body
// carries the queries that came (osquery.DistributedWriteResponse).
func (s *Server) holdAsRead(w http.ResponseWriter, r *http.Request, h vigil.Host, waitMS int) {
	if s.park(w, r, h, waitMS, true) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(osquery.HeaderHeld, "1")
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	queries, err := s.hold(w, r, h, waitMS)
	if err != nil {
		if r.Context().Err() != nil {
			return // the agent went away
		}
		// Too late for an error status: the agent reads at its next poll.
		s.logger.Error("holding a request as the next read", "path", r.URL.Path, "host_id", h.ID, "err", err)
	}
	json.NewEncoder(w).Encode(osquery.DistributedWriteResponse{Queries: queries, VigilHeld: true})
}
