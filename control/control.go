// Package control is the control plane agents talk to: the osquery TLS
// remote API (enroll, config, log, distributed read/write, carve
// begin/block), node-key authentication, host check-ins, the fleet
// configuration (versions, packs targeted by labels and shards) merged
// into what each host is served, and live-query campaigns with their
// subscribers. Durable state lives in package state; with a PostgreSQL
// state several replicas share live queries (an agent held on one replica
// gets a query started on another at once). Result and status logs go to
// a LogSink (ingest). cmd/vigil wires it; web uses it to start and follow
// campaigns and manage the configuration. Agents never import it.
package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/internal/failrate"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/state"
)

// LogSink receives the result and status log lines of authenticated hosts.
// Log returns nil only once the lines are durable; an error wrapping
// vigil.ErrUnavailable asks the agent to retry later (503).
type LogSink interface {
	Log(ctx context.Context, host vigil.Host, logType string, lines []json.RawMessage) error
}

// Defaults for Options.
const (
	DefaultMaxBodyBytes      = 8 << 20
	DefaultMaxOtherBodyBytes = 1 << 20
	DefaultOfflineAfter      = 2 * time.Minute
	// DefaultQueryTimeout outlasts osquery's default distributed_interval
	// (60 s) with room for a slow read: with 60 s, hosts that polled just
	// before a query started polled again just after its deadline.
	DefaultQueryTimeout = 90 * time.Second
	DefaultSeenFlush    = 2 * time.Second
	// SweepInterval is how often a server times out campaigns past their
	// deadline whose own timer is gone (started by a replica that stopped).
	SweepInterval = 5 * time.Second
	// MaxLongPoll caps how long distributed/read is held open, whatever the
	// agent asks for.
	MaxLongPoll = 60 * time.Second
	// MaxSQLBytes bounds the SQL of a live query.
	MaxSQLBytes = 64 << 10
)

// Options configure a Server. State is required.
type Options struct {
	State *state.DB
	// Ingest receives log lines. Nil drops them (with a warning at start).
	Ingest LogSink
	// EnrollSecret, when set, is accepted for enrollment besides the secrets
	// stored in State (see state.AddEnrollSecret for rotation). With neither,
	// every enrollment is refused.
	EnrollSecret string
	// Config returns the configuration served to a host. Nil serves an
	// empty configuration.
	Config func(host vigil.Host) osquery.Config
	Logger *slog.Logger
	Now    func() time.Time
	// MaxBodyBytes bounds the bodies of log and distributed/write (they
	// carry results); default 8 MiB.
	MaxBodyBytes int64
	// MaxOtherBodyBytes bounds enroll, config and distributed/read bodies;
	// default 1 MiB.
	MaxOtherBodyBytes int64
	// OfflineAfter: a host not seen for this long is offline; live queries
	// report it offline at once instead of waiting. Default 2 minutes; keep
	// it above the agents' check-in interval (osquery's distributed_interval).
	OfflineAfter time.Duration
	// QueryTimeout is how long a live query waits for its hosts; default
	// DefaultQueryTimeout. Keep it above the agents' distributed_interval.
	QueryTimeout time.Duration
	// LiveQueryPriority is how long, at most, a live query to hosts holding
	// a long poll makes the ingest drainer and detection wait (Yield), holds
	// back acknowledging the answers already recorded and makes parked
	// holds whose time runs out last until it ends (at most 10 s past
	// their time), so that the answers still to come get the cores;
	// default DefaultLiveQueryPriority, negative turns it off. Queries
	// started one after another extend it to twice that at most.
	LiveQueryPriority time.Duration
	// SeenFlush is how often check-ins are written to State in one batch;
	// default 2 s.
	SeenFlush time.Duration
	// MaxCarveBytes bounds a carve's announced size (default 512 MiB) and
	// MaxCarveBlockBytes its block size (default 8 MiB); carves over them
	// are refused at carve/begin.
	MaxCarveBytes      int64
	MaxCarveBlockBytes int64
	// BadSecretLimit enrollments with a wrong secret from one address
	// within BadSecretWindow get 429 until the window ends; defaults 20
	// per minute. The first failure of a window and the one that trips
	// the limit are written to the audit log.
	BadSecretLimit  int
	BadSecretWindow time.Duration
	// Rejoin, when set, hands a connection back to the HTTP server that
	// accepted it: its listener's Accept returns it again. It reports
	// false when the listener is closed. With it, long-poll holds over
	// HTTP/1.1 are parked off net/http while they wait (park.go), and
	// connections wait off net/http between requests (idle.go).
	Rejoin func(net.Conn) bool
	// IdleTimeout closes a connection waiting off net/http for its next
	// request this long (idle.go); default DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Server serves the osquery remote API and runs live-query campaigns.
type Server struct {
	opts   Options
	db     *state.DB
	logger *slog.Logger
	now    func() time.Time

	checkins *checkins
	hint     *stateHint

	queriesMu sync.RWMutex
	queries   map[string]string // scheduled query name -> SQL, from served configs

	notify    *notifier
	local     *localQueries
	marksDone chan struct{}
	hub       *hub
	badAuth   *failrate.Limiter
	stats     counters
	timerMu   sync.Mutex
	timers    map[string]*time.Timer
	prio      priority
	parked    waitingSet[*parkedHold]
	idle      waitingSet[net.Conn]
	wakes     wakeQueue

	stop   chan struct{}
	done   chan struct{}
	listen chan struct{} // closed when the replica listener has stopped
	cancel context.CancelFunc
	once   sync.Once
}

// New returns a Server and starts its background work (check-in flushes,
// campaign deadlines); Close stops it.
func New(opts Options) (*Server, error) {
	if opts.State == nil {
		return nil, errors.New("control: Options.State is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxOtherBodyBytes <= 0 {
		opts.MaxOtherBodyBytes = DefaultMaxOtherBodyBytes
	}
	if opts.OfflineAfter <= 0 {
		opts.OfflineAfter = DefaultOfflineAfter
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.SeenFlush <= 0 {
		opts.SeenFlush = DefaultSeenFlush
	}
	if opts.LiveQueryPriority == 0 {
		opts.LiveQueryPriority = DefaultLiveQueryPriority
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.BadSecretLimit <= 0 {
		opts.BadSecretLimit = 20
	}
	if opts.BadSecretWindow <= 0 {
		opts.BadSecretWindow = time.Minute
	}
	if opts.MaxCarveBytes <= 0 {
		opts.MaxCarveBytes = DefaultMaxCarveBytes
	}
	if opts.MaxCarveBlockBytes <= 0 {
		opts.MaxCarveBlockBytes = DefaultMaxCarveBlockBytes
	}
	s := &Server{
		opts:      opts,
		db:        opts.State,
		logger:    opts.Logger.With("component", "control"),
		now:       opts.Now,
		checkins:  newCheckins(checkinInterval(opts)),
		hint:      newStateHint(),
		queries:   map[string]string{},
		local:     newLocalQueries(),
		marksDone: make(chan struct{}),
		hub:       newHub(),
		badAuth:   failrate.New(opts.BadSecretLimit, opts.BadSecretWindow),
		timers:    map[string]*time.Timer{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.notify = newNotifier(func(p *parkedHold) { s.wakes.push(func() { p.run(runWoken) }) })
	if opts.Ingest == nil {
		s.logger.Warn("no log sink: result and status logs will be dropped")
	}
	if opts.Config != nil {
		s.indexConfig(opts.Config(vigil.Host{}))
	}
	// Logs of fleet-configured queries may come before any config request
	// after a restart: know their names from the start.
	if fc, _, err := s.FleetConfig(context.Background()); err != nil {
		s.logger.Error("reading the fleet configuration", "err", err)
	} else {
		s.indexFleet(fc)
	}
	// Campaigns left open by a previous run get their deadlines back.
	open, err := s.db.OpenCampaigns(context.Background())
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	for _, c := range open {
		s.scheduleDeadline(c.ID, c.Deadline)
	}
	s.loadHint()
	s.wakes.start(4 * runtime.GOMAXPROCS(0))
	go s.flushLoop()
	go s.markLoop()
	// Replicas sharing a PostgreSQL state hear each other's live queries
	// and answers.
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.listen = cancel, make(chan struct{})
	go func() {
		defer close(s.listen)
		s.db.Listen(ctx, s.onAnnounce)
	}()
	return s, nil
}

// Close stops background work and writes pending check-ins.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.answerParked()
		s.closeIdle()
		s.wakes.close()
		s.cancel()
		<-s.done
		<-s.marksDone
		<-s.listen
		s.timerMu.Lock()
		for id, t := range s.timers {
			t.Stop()
			delete(s.timers, id)
		}
		s.timerMu.Unlock()
		s.prio.mu.Lock()
		ch := s.prio.ch
		s.prio.mu.Unlock()
		s.closePriority(ch) // nothing waits on a closed server
	})
	return nil
}

// Handler serves the osquery remote API paths (osquery.Path*).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+osquery.PathEnroll, s.handleEnroll)
	mux.HandleFunc("POST "+osquery.PathConfig, s.handleConfig)
	mux.HandleFunc("POST "+osquery.PathLog, s.handleLog)
	mux.HandleFunc("POST "+osquery.PathDistributedRead, s.handleDistributedRead)
	mux.HandleFunc("POST "+osquery.PathDistributedWrite, s.handleDistributedWrite)
	mux.HandleFunc("POST "+osquery.PathCarveBegin, s.handleCarveBegin)
	mux.HandleFunc("POST "+osquery.PathCarveBlock, s.handleCarveBlock)
	return s.idleAfter(mux)
}

// OsqueryTableOf returns the osquery table the scheduled query of this
// name reads (from the configurations served so far), or "".
func (s *Server) OsqueryTableOf(queryName string) string {
	s.queriesMu.RLock()
	q, ok := s.queries[queryName]
	s.queriesMu.RUnlock()
	if !ok {
		return ""
	}
	return schema.OsqueryTableOf(q)
}

// indexConfig remembers the SQL of every scheduled and pack query under
// the name osquery logs it with (packs: "pack_<pack>_<query>", osquery's
// default pack_delimiter).
func (s *Server) indexConfig(cfg osquery.Config) {
	s.queriesMu.Lock()
	defer s.queriesMu.Unlock()
	for name, q := range cfg.Schedule {
		s.queries[name] = q.Query
	}
	for pack, raw := range cfg.Packs {
		var p struct {
			Queries map[string]osquery.ScheduledQuery `json:"queries"`
		}
		if json.Unmarshal(raw, &p) != nil { // a pack given as a file path: nothing to index
			continue
		}
		for name, q := range p.Queries {
			s.queries["pack_"+pack+"_"+name] = q.Query
		}
	}
}

// Online reports whether a host checked in within OfflineAfter, counting
// check-ins not yet written to State.
func (s *Server) Online(h vigil.Host) bool {
	return s.withLastSeen(h).Online(s.now(), s.opts.OfflineAfter)
}

// Hosts returns every host with its latest check-in time.
func (s *Server) Hosts(ctx context.Context) ([]vigil.Host, error) {
	hosts, err := s.db.Hosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	for i := range hosts {
		hosts[i] = s.withLastSeen(hosts[i])
	}
	return hosts, nil
}

func (s *Server) withLastSeen(h vigil.Host) vigil.Host {
	t, ok := s.checkins.lastSeen(h.ID)
	if ok && t.After(h.LastSeen) {
		h.LastSeen = t
	}
	return h
}

// touch records a check-in; flushLoop writes them in batches.
func (s *Server) touch(hostID, remote string) {
	s.checkins.touch(hostID, remote, s.now())
}

// checkinInterval is how often a host's check-in is written to the
// state: often enough that replicas, which read it there, see hosts
// online (a quarter of OfflineAfter, at most 30 s), never more often
// than the flushes.
func checkinInterval(o Options) time.Duration {
	return max(min(o.OfflineAfter/4, 30*time.Second), o.SeenFlush)
}

func (s *Server) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SeenFlush)
	defer t.Stop()
	sweep := time.NewTicker(SweepInterval)
	defer sweep.Stop()
	hint := time.NewTicker(stateHintTTL)
	defer hint.Stop()
	for {
		select {
		case <-hint.C:
			s.loadHint()
		case <-t.C:
			s.flushSeen(false)
		case <-sweep.C:
			s.sweep()
		case <-s.stop:
			s.flushSeen(true)
			return
		}
	}
}

// loadHint learns from the state which hosts have live queries waiting
// there (see stateHint).
func (s *Server) loadHint() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.hint.load(ctx, s.db.PendingHosts); err != nil {
		s.logger.Error("reading which hosts have live queries waiting; every host asks until the next try", "err", err)
	}
}

func (s *Server) flushSeen(all bool) {
	batch := s.checkins.take(all)
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.db.TouchHosts(ctx, batch); err != nil {
		s.logger.Error("recording check-ins", "hosts", len(batch), "err", err)
		s.checkins.unwritten(batch)
	}
}

// checkEnrollSecret accepts Options.EnrollSecret or any valid stored
// secret; both compared in constant time.
func (s *Server) checkEnrollSecret(ctx context.Context, secret string) (bool, error) {
	ok := false
	if s.opts.EnrollSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.EnrollSecret)) == 1 {
		ok = true
	}
	_, stored, err := s.db.CheckEnrollSecret(ctx, secret, s.now())
	if err != nil {
		return false, err
	}
	return ok || stored, nil
}

type sourceKey struct{}

// WithSource returns a context carrying the remote address of the person
// acting, which StartCampaign writes into the audit log.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, addr)
}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}
