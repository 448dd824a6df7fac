package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/internal/failrate"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store"
)

// Defaults for Options.
const (
	DefaultBadAuthLimit  = 20
	DefaultBadAuthWindow = time.Minute
	maxRequestBytes      = 1 << 20
)

// Options configure the API. State and Control are required.
type Options struct {
	State   *state.DB
	Control *control.Server
	Logger  *slog.Logger
	Now     func() time.Time
	// BadAuthLimit failed authentications from one address within
	// BadAuthWindow get 429 until the window ends; defaults 20 per minute.
	BadAuthLimit  int
	BadAuthWindow time.Duration

	// The console's optional sources; an endpoint whose source is nil
	// answers 501.
	//
	// Events runs the event explorer's SQL, rule tests and host timelines
	// (read-only: the store refuses anything but one SELECT); EventsDialect
	// is its dialect ("" means DuckDB).
	Events        store.Querier
	EventsDialect store.Dialect
	// Tables lists the tables live queries can read, for completion.
	Tables func() []TableSchema
	// Rules lists the loaded detection rules; RuleSource returns one's
	// YAML; SetRuleEnabled switches one on or off.
	Rules          func() []vigil.Rule
	RuleSource     func(ctx context.Context, id string) ([]byte, error)
	SetRuleEnabled func(ctx context.Context, id string, enabled bool) error
	// Outputs are the alert outputs (an *output.Dispatcher) for their
	// counters, test sends and dead-letter redelivery; nil when the server
	// has none (the list is empty, the actions answer 501).
	Outputs Outputs
	// NoConsole leaves the console's pages out (the API alone).
	NoConsole bool
}

// API serves /api/v1/... for people.
type API struct {
	opts   Options
	db     *state.DB
	ctl    *control.Server
	logger *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux

	limiter *failrate.Limiter

	patterns []string // every authenticated route, for the authorization test

	drops dropsCache // AgentDrops

	touchMu sync.Mutex
	touched map[int64]time.Time // token id -> last recorded use
}

// New returns the API. It panics when State or Control is missing: that
// is a wiring mistake, not a condition to handle.
func New(opts Options) *API {
	if opts.State == nil || opts.Control == nil {
		panic("web: Options.State and Options.Control are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BadAuthLimit <= 0 {
		opts.BadAuthLimit = DefaultBadAuthLimit
	}
	if opts.BadAuthWindow <= 0 {
		opts.BadAuthWindow = DefaultBadAuthWindow
	}
	a := &API{
		opts: opts, db: opts.State, ctl: opts.Control, now: opts.Now,
		logger:  opts.Logger.With("component", "web"),
		mux:     http.NewServeMux(),
		limiter: failrate.New(opts.BadAuthLimit, opts.BadAuthWindow),
		touched: map[int64]time.Time{},
	}
	a.routes()
	return a
}

// Handler serves the API.
func (a *API) Handler() http.Handler { return a.mux }

// handlerFunc is a handler that knows who is calling.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p state.Principal)

func (a *API) routes() {
	a.handle("GET /api/v1/whoami", state.RoleViewer, a.whoami)
	a.handle("GET /api/v1/hosts", state.RoleViewer, a.listHosts)
	a.handle("GET /api/v1/alerts", state.RoleViewer, a.listAlerts)
	a.handle("PATCH /api/v1/alerts/{id}", state.RoleOperator, a.updateAlert)
	a.handle("GET /api/v1/queries", state.RoleViewer, a.listQueries)
	a.handle("GET /api/v1/queries/{id}", state.RoleViewer, a.getQuery)
	a.handle("GET /api/v1/queries/{id}/stream", state.RoleViewer, a.streamQuery)
	a.handle("POST /api/v1/queries", state.RoleOperator, a.startQuery)
	a.handle("GET /api/v1/carves", state.RoleViewer, a.listCarves)
	a.handle("GET /api/v1/carves/{id}/data", state.RoleOperator, a.carveData)

	a.handle("GET /api/v1/config", state.RoleViewer, a.getConfig)
	a.handle("PUT /api/v1/config", state.RoleAdmin, a.putConfig)
	a.handle("GET /api/v1/config/versions", state.RoleViewer, a.listConfigVersions)
	a.handle("GET /api/v1/config/versions/{version}", state.RoleViewer, a.getConfigVersion)
	a.handle("GET /api/v1/hosts/{id}/config", state.RoleViewer, a.hostConfig)
	a.handle("PUT /api/v1/hosts/{id}/labels", state.RoleAdmin, a.setHostLabels)

	a.handle("DELETE /api/v1/hosts/{id}", state.RoleAdmin, a.removeHost)
	a.handle("POST /api/v1/hosts/{id}/revoke", state.RoleAdmin, a.revokeHost)
	a.handle("GET /api/v1/tokens", state.RoleAdmin, a.listTokens)
	a.handle("POST /api/v1/tokens", state.RoleAdmin, a.createToken)
	a.handle("DELETE /api/v1/tokens/{id}", state.RoleAdmin, a.revokeToken)
	a.handle("GET /api/v1/enroll-secrets", state.RoleAdmin, a.listEnrollSecrets)
	a.handle("POST /api/v1/enroll-secrets", state.RoleAdmin, a.addEnrollSecret)
	a.handle("DELETE /api/v1/enroll-secrets/{name}", state.RoleAdmin, a.revokeEnrollSecret)
	a.handle("GET /api/v1/audit", state.RoleAdmin, a.exportAudit)

	a.handle("GET /api/v1/schema", state.RoleViewer, a.listTables)
	a.handle("POST /api/v1/alerts/bulk", state.RoleOperator, a.bulkUpdateAlerts)
	a.handle("POST /api/v1/events/query", state.RoleOperator, a.queryEvents)
	a.handle("GET /api/v1/hosts/{id}/timeline", state.RoleOperator, a.hostTimeline)
	a.handle("GET /api/v1/hosts/{id}/health", state.RoleViewer, a.hostHealth)
	a.handle("GET /api/v1/rules", state.RoleViewer, a.listRules)
	a.handle("GET /api/v1/rules/{id}/source", state.RoleViewer, a.ruleSource)
	a.handle("PUT /api/v1/rules/{id}/enabled", state.RoleAdmin, a.setRuleEnabled)
	a.handle("POST /api/v1/rules/test", state.RoleOperator, a.testRule)
	a.handle("GET /api/v1/suppressions", state.RoleViewer, a.listSuppressions)
	a.handle("POST /api/v1/suppressions", state.RoleOperator, a.createSuppression)
	a.handle("DELETE /api/v1/suppressions/{id}", state.RoleOperator, a.expireSuppression)
	a.handle("GET /api/v1/outputs", state.RoleViewer, a.listOutputs)
	a.handle("POST /api/v1/outputs/{name}/test", state.RoleAdmin, a.testOutput)
	a.handle("GET /api/v1/dead-letters", state.RoleAdmin, a.listDeadLetters)
	a.handle("POST /api/v1/dead-letters/{id}/redeliver", state.RoleAdmin, a.redeliverDeadLetter)
	if !a.opts.NoConsole {
		a.mux.Handle("/", consoleHandler())
	}

	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
}

// handle registers a route that needs at least role need.
func (a *API) handle(pattern string, need state.Role, h handlerFunc) {
	a.patterns = append(a.patterns, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		if !p.Role.Allows(need) {
			a.logger.Info("forbidden", "user", p.Name, "role", p.Role, "need", need, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s needs the %s role; %s has %s", pattern, need, p.Name, p.Role))
			return
		}
		h(w, r, p)
	})
}

// authenticate checks "Authorization: Bearer <token>". Failures are
// rate-limited per source address and audited.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (state.Principal, bool) {
	src := failrate.SourceIP(r.RemoteAddr)
	if a.limiter.Blocked(src, a.now()) {
		w.Header().Set("Retry-After", fmt.Sprint(int(a.opts.BadAuthWindow.Seconds())))
		writeError(w, http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
		return state.Principal{}, false
	}
	h := r.Header.Get("Authorization")
	token, found := cutPrefixFold(h, "Bearer ")
	token = strings.TrimSpace(token)
	if !found || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
		writeError(w, http.StatusUnauthorized, "missing token: send Authorization: Bearer <token>")
		return state.Principal{}, false
	}
	p, err := a.db.Authenticate(r.Context(), token)
	if err != nil {
		if !errors.Is(err, vigil.ErrUnauthorized) {
			a.internal(w, r, err)
			return state.Principal{}, false
		}
		n := a.limiter.Fail(src, a.now())
		// Audit the first failure of a window and the one that trips the
		// limit, not every attempt of a brute force.
		if n == 1 || n == a.opts.BadAuthLimit {
			if err := a.db.Audit(r.Context(), state.AuditEntry{Actor: "anonymous", Action: "auth.bad_token",
				Source: r.RemoteAddr, Detail: map[string]any{"path": r.URL.Path, "failures": n}}); err != nil {
				a.logger.Error("auditing a bad token", "err", err)
			}
		}
		a.logger.Warn("bad token", "remote", r.RemoteAddr, "path", r.URL.Path, "failures", n)
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid or revoked token")
		return state.Principal{}, false
	}
	a.touchToken(r, p.TokenID)
	return p, true
}

// touchToken records a token's use at most once a minute.
func (a *API) touchToken(r *http.Request, id int64) {
	now := a.now()
	a.touchMu.Lock()
	last := a.touched[id]
	if now.Sub(last) < time.Minute {
		a.touchMu.Unlock()
		return
	}
	a.touched[id] = now
	a.touchMu.Unlock()
	if err := a.db.TouchToken(r.Context(), id, now); err != nil {
		a.logger.Warn("recording token use", "err", err)
	}
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// fail maps an error to a status at the edge: vigil error kinds to 4xx,
// anything else to a 500 whose detail stays in the log.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, vigil.ErrInvalid):
		writeError(w, http.StatusBadRequest, readable(err, vigil.ErrInvalid))
	case errors.Is(err, vigil.ErrNotFound):
		writeError(w, http.StatusNotFound, readable(err, vigil.ErrNotFound))
	case errors.Is(err, vigil.ErrConflict):
		writeError(w, http.StatusConflict, readable(err, vigil.ErrConflict))
	case errors.Is(err, vigil.ErrForbidden):
		writeError(w, http.StatusForbidden, readable(err, vigil.ErrForbidden))
	case errors.Is(err, vigil.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, readable(err, vigil.ErrUnavailable))
	default:
		a.internal(w, r, err)
	}
}

// readable drops the package prefixes and the trailing error kind (the
// status says it) from an error meant for a person.
func readable(err error, kind error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+kind.Error())
	for _, p := range []string{"control: ", "state: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; see the server log")
}

// decode reads a JSON request body strictly: unknown fields are errors, so
// a typo ("host" for "hosts") is not silently ignored.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return fmt.Errorf("body exceeds %d bytes: %w", maxRequestBytes, vigil.ErrInvalid)
		case errors.As(err, &se):
			return fmt.Errorf("invalid JSON at offset %d: %s: %w", se.Offset, se.Error(), vigil.ErrInvalid)
		case errors.As(err, &te):
			return fmt.Errorf("invalid JSON at offset %d: field %s: got %s, want %s: %w", te.Offset, te.Field, te.Value, te.Type, vigil.ErrInvalid)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("empty body: expected a JSON object: %w", vigil.ErrInvalid)
		default:
			return fmt.Errorf("invalid JSON: %s: %w", err.Error(), vigil.ErrInvalid)
		}
	}
	// Not dec.More: it reports false before a stray '}' or ']', which
	// would let `{...}}` through.
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body exceeds %d bytes: %w", maxRequestBytes, vigil.ErrInvalid)
		}
		return fmt.Errorf("invalid JSON: data after the object: %w", vigil.ErrInvalid)
	}
	return nil
}

// noBody checks the body of an action that takes no parameters: none (or
// {}) is accepted, anything else is a 400 as decode words it, so a
// client that sends parameters does not have them silently ignored.
func noBody(r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("body exceeds %d bytes: %w", maxRequestBytes, vigil.ErrInvalid)
	case err != nil:
		return fmt.Errorf("reading body: %s: %w", err.Error(), vigil.ErrInvalid)
	case len(bytes.TrimSpace(b)) == 0:
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return decode(r, &struct{}{})
}
