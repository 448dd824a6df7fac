// Package agenttest provides a minimal fake osquery TLS server
// (httptest.NewTLSServer) for tests of the agent and of anything that runs
// one: enrollment with a secret, node keys that can be revoked, a config,
// log collection, distributed queries with the Vigil long-poll capability,
// and injected 503 answers.
//
// Only tests import it.
package agenttest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// Server is a fake osquery remote API server. Its exported methods are safe
// for concurrent use.
type Server struct {
	*httptest.Server
	EnrollSecret string

	mu        sync.Mutex
	changed   *sync.Cond
	nodeKeys  map[string]string // node key -> host identifier
	enrolls   []osquery.EnrollRequest
	config    []byte
	results   []json.RawMessage
	status    []json.RawMessage
	logPosts  int
	fail503   int
	reads     []osquery.NodeRequest
	pending   map[string]string
	discovery map[string]string
	writes    []osquery.DistributedWriteRequest
	authHdrs  []string
	conns     map[string]bool // client addresses of node requests
	order     []string        // paths of node requests, as they came
	logs      []osquery.LogRequest
	// plainLogs: log sends are answered at once, as osquery servers do,
	// even when the agent asks for a hold (SetHoldLogs).
	plainLogs bool
	// plainReads: distributed/read is answered at once even when the
	// agent asks for a hold (SetHoldReads).
	plainReads bool
	holding    int // requests being held now
}

// NewServer starts a TLS server requiring secret at enrollment.
func NewServer(secret string) *Server {
	s := &Server{
		EnrollSecret: secret,
		nodeKeys:     map[string]string{},
		config:       []byte(`{}`),
		pending:      map[string]string{},
		discovery:    map[string]string{},
		conns:        map[string]bool{},
	}
	s.changed = sync.NewCond(&s.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+osquery.PathEnroll, s.enroll)
	mux.HandleFunc("POST "+osquery.PathConfig, s.node(s.configH))
	mux.HandleFunc("POST "+osquery.PathLog, s.node(s.logH))
	mux.HandleFunc("POST "+osquery.PathDistributedRead, s.node(s.readH))
	mux.HandleFunc("POST "+osquery.PathDistributedWrite, s.node(s.writeH))
	s.Server = httptest.NewTLSServer(mux)
	return s
}

// Conns is how many client connections (distinct remote addresses) the
// node requests came over.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// CertPool trusts the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

func (s *Server) broadcast() { s.changed.Broadcast() }

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req osquery.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enrolls = append(s.enrolls, req)
	if subtle.ConstantTimeCompare([]byte(req.EnrollSecret), []byte(s.EnrollSecret)) != 1 {
		writeJSON(w, osquery.EnrollResponse{NodeInvalid: true})
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := hex.EncodeToString(b[:])
	s.nodeKeys[key] = req.HostIdentifier
	s.broadcast()
	writeJSON(w, osquery.EnrollResponse{NodeKey: key})
}

// node checks the node key of a request before handing its body on.
func (s *Server) node(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var nr osquery.NodeRequest
		if err := json.Unmarshal(body, &nr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.authHdrs = append(s.authHdrs, r.Header.Get("Authorization"))
		s.conns[r.RemoteAddr] = true
		s.order = append(s.order, r.URL.Path)
		valid := false
		for k := range s.nodeKeys {
			if subtle.ConstantTimeCompare([]byte(k), []byte(nr.NodeKey)) == 1 {
				valid = true
			}
		}
		s.mu.Unlock()
		if !valid {
			writeJSON(w, osquery.NodeInvalidResponse{NodeInvalid: true})
			return
		}
		h(w, r, body)
	}
}

func (s *Server) configH(w http.ResponseWriter, _ *http.Request, _ []byte) {
	s.mu.Lock()
	c := s.config
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(c)
}

func (s *Server) logH(w http.ResponseWriter, r *http.Request, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logPosts++
	if s.fail503 > 0 {
		s.fail503--
		w.Header().Set("Retry-After", "1")
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	var lr osquery.LogRequest
	if err := json.Unmarshal(body, &lr); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch lr.LogType {
	case osquery.LogTypeResult:
		s.results = append(s.results, lr.Data...)
	case osquery.LogTypeStatus:
		s.status = append(s.status, lr.Data...)
	default:
		http.Error(w, "unknown log_type "+strconv.Quote(lr.LogType), http.StatusBadRequest)
		return
	}
	s.logs = append(s.logs, osquery.LogRequest{LogType: lr.LogType, VigilWait: lr.VigilWait})
	s.broadcast()
	if lr.VigilWait > 0 && !s.plainLogs {
		// As Vigil's server: the status says the lines are in, then the
		// request is held as the next read.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(osquery.HeaderHeld, "1")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		s.hold(r, lr.VigilWait)
		var q map[string]string
		if len(s.discovery) == 0 {
			// The answer has no room for discovery queries: those are
			// left for the read that follows an early end.
			q, s.pending = s.pending, map[string]string{}
		}
		json.NewEncoder(w).Encode(osquery.LogResponse{Queries: q, VigilHeld: true})
		return
	}
	writeJSON(w, map[string]bool{"node_invalid": false})
}

// hold waits, with s.mu held, until a query is pending or waitMS has
// passed.
func (s *Server) hold(r *http.Request, waitMS int) {
	s.holding++
	defer func() { s.holding-- }()
	if len(s.pending) == 0 {
		deadline := time.Now().Add(time.Duration(waitMS) * time.Millisecond)
		wake := func() {
			s.mu.Lock()
			s.broadcast()
			s.mu.Unlock()
		}
		t := time.AfterFunc(time.Until(deadline), wake)
		stop := context.AfterFunc(r.Context(), wake)
		defer stop()
		for len(s.pending) == 0 && time.Now().Before(deadline) && r.Context().Err() == nil {
			s.changed.Wait()
		}
		t.Stop()
	}
}

func (s *Server) readH(w http.ResponseWriter, r *http.Request, body []byte) {
	var nr osquery.NodeRequest
	_ = json.Unmarshal(body, &nr)
	s.mu.Lock()
	s.reads = append(s.reads, nr)
	s.broadcast()
	if nr.VigilWait > 0 && !s.plainReads {
		// Long poll: hold the request until a query is added or the wait
		// the agent asked for has passed.
		s.hold(r, nr.VigilWait)
	}
	resp := osquery.DistributedReadResponse{Queries: s.pending, Discovery: s.discovery}
	s.pending, s.discovery = map[string]string{}, map[string]string{}
	s.mu.Unlock()
	writeJSON(w, resp)
}

func (s *Server) writeH(w http.ResponseWriter, r *http.Request, body []byte) {
	var wr osquery.DistributedWriteRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.writes = append(s.writes, wr)
	s.broadcast()
	s.mu.Unlock()
	writeJSON(w, map[string]bool{"node_invalid": false})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// SetConfig sets the config served to every node.
func (s *Server) SetConfig(c []byte) {
	s.mu.Lock()
	s.config = append([]byte(nil), c...)
	s.mu.Unlock()
}

// SetHoldLogs says whether log sends asking for a hold (vigil_wait_ms)
// are held as the next read, as Vigil's server does (the default), or
// answered at once, as osquery servers do.
func (s *Server) SetHoldLogs(hold bool) {
	s.mu.Lock()
	s.plainLogs = !hold
	s.mu.Unlock()
}

// Holding is how many requests are held now.
func (s *Server) Holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding
}

// SetHoldReads says whether distributed/read asking for a hold is held
// (the default, as Vigil's server) or answered at once (osquery servers).
func (s *Server) SetHoldReads(hold bool) {
	s.mu.Lock()
	s.plainReads = !hold
	s.mu.Unlock()
}

// Logs are the log sends so far, without their lines (LogType and
// VigilWait).
func (s *Server) Logs() []osquery.LogRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]osquery.LogRequest(nil), s.logs...)
}

// RevokeNodeKeys forgets every node key: the next request of each agent is
// answered node_invalid.
func (s *Server) RevokeNodeKeys() {
	s.mu.Lock()
	s.nodeKeys = map[string]string{}
	s.mu.Unlock()
}

// Fail503 answers the next n log posts with 503 and Retry-After: 1.
func (s *Server) Fail503(n int) {
	s.mu.Lock()
	s.fail503 = n
	s.mu.Unlock()
}

// AddQuery queues a distributed query (and optional discovery query).
func (s *Server) AddQuery(id, sql, discovery string) {
	s.mu.Lock()
	s.pending[id] = sql
	if discovery != "" {
		s.discovery[id] = discovery
	}
	s.broadcast()
	s.mu.Unlock()
}

// Enrolls returns the enrollment requests received.
func (s *Server) Enrolls() []osquery.EnrollRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]osquery.EnrollRequest(nil), s.enrolls...)
}

// NodeKeys returns the number of valid node keys.
func (s *Server) NodeKeys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nodeKeys)
}

// Results returns the result lines received, decoded.
func (s *Server) Results() []osquery.ResultLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]osquery.ResultLine, 0, len(s.results))
	for _, r := range s.results {
		var l osquery.ResultLine
		if json.Unmarshal(r, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// RawResults returns the result lines received as sent.
func (s *Server) RawResults() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.results...)
}

// Status returns the status lines received, decoded.
func (s *Server) Status() []osquery.StatusLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]osquery.StatusLine, 0, len(s.status))
	for _, r := range s.status {
		var l osquery.StatusLine
		if json.Unmarshal(r, &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// LogPosts is the number of POST /log requests, including refused ones.
func (s *Server) LogPosts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logPosts
}

// Order returns the paths of the node requests (all but enroll) in the
// order they came in.
func (s *Server) Order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// Reads returns the distributed/read requests received.
func (s *Server) Reads() []osquery.NodeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]osquery.NodeRequest(nil), s.reads...)
}

// Writes returns the distributed/write requests received.
func (s *Server) Writes() []osquery.DistributedWriteRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]osquery.DistributedWriteRequest(nil), s.writes...)
}

// AuthHeaders returns the Authorization headers of node requests.
func (s *Server) AuthHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.authHdrs...)
}

// WaitFor blocks until cond (called with the server's lock not held)
// returns true or timeout passes; it reports whether cond became true.
func (s *Server) WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
