package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/state"
)

func (a *API) whoami(w http.ResponseWriter, r *http.Request, p state.Principal) {
	writeJSON(w, http.StatusOK, map[string]string{"user": p.Name, "role": string(p.Role)})
}

// HostView is a host as the API shows it.
type HostView struct {
	vigil.Host
	Online bool `json:"online"`
}

func (a *API) listHosts(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	hosts, err := a.ctl.Hosts(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]HostView, len(hosts))
	for i, h := range hosts {
		out[i] = HostView{Host: h, Online: a.ctl.Online(h)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hosts": out})
}

// AlertList answers GET /api/v1/alerts: a page of alerts, newest first,
// each with its match count. NextBefore, when the page is full, asks for
// the next one (?before=NextBefore); 0 means this was the last.
type AlertList struct {
	Alerts     []state.AlertRecord `json:"alerts"`
	NextBefore int64               `json:"next_before,omitempty"`
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	q := r.URL.Query()
	f := state.AlertFilter{Status: vigil.AlertStatus(q.Get("status")), Host: q.Get("host"), RuleID: q.Get("rule"), Limit: 100}
	switch f.Status {
	case "", vigil.AlertOpen, vigil.AlertAcknowledged, vigil.AlertClosed:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q: want open, acknowledged or closed", f.Status))
		return
	}
	lim, ok := queryLimit(w, r, f.Limit, state.MaxAlertLimit)
	if !ok {
		return
	}
	f.Limit = lim
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("before %q: want the id of the last alert of the previous page", s))
			return
		}
		f.Before = n
	}
	alerts, err := a.db.ListAlertRecords(r.Context(), f)
	if errors.Is(err, vigil.ErrNotFound) {
		// A cursor that names no alert is a bad request, not a missing page.
		writeError(w, http.StatusBadRequest, readable(err, vigil.ErrNotFound))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := AlertList{Alerts: alerts}
	if len(alerts) == f.Limit {
		out.NextBefore = alerts[len(alerts)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// AlertUpdate is the body of PATCH /api/v1/alerts/{id}: move an alert
// through its lifecycle (open, acknowledged, closed).
type AlertUpdate struct {
	Status   vigil.AlertStatus `json:"status"`
	Assignee string            `json:"assignee,omitempty"`
	Reason   string            `json:"close_reason,omitempty"`
}

func (a *API) updateAlert(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("alert id %q is not a number", r.PathValue("id")))
		return
	}
	var req AlertUpdate
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Status == vigil.AlertClosed && strings.TrimSpace(req.Reason) == "" {
		writeError(w, http.StatusBadRequest, "closing an alert needs a close_reason")
		return
	}
	if err := a.db.SetAlertStatus(r.Context(), id, req.Status, req.Assignee, req.Reason); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "alert.update", strconv.FormatInt(id, 10), map[string]any{"status": req.Status, "assignee": req.Assignee, "reason": req.Reason})
	w.WriteHeader(http.StatusNoContent)
}

// QueryRequest is the body of POST /api/v1/queries.
type QueryRequest struct {
	SQL   string   `json:"sql"`
	Hosts []string `json:"hosts"`
	All   bool     `json:"all"`
}

// QueryTarget is one host a live query went to.
type QueryTarget struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	Status   string `json:"status"` // pending, or offline when it will not be asked
}

// QueryStarted answers POST /api/v1/queries.
type QueryStarted struct {
	ID    string        `json:"id"`
	Hosts []QueryTarget `json:"hosts"`
}

func (a *API) startQuery(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req QueryRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		writeError(w, http.StatusBadRequest, "sql is empty")
		return
	}
	if !req.All && len(req.Hosts) == 0 {
		writeError(w, http.StatusBadRequest, `no target: name "hosts" or set "all": true`)
		return
	}
	if req.All && len(req.Hosts) > 0 {
		writeError(w, http.StatusBadRequest, `give either "hosts" or "all": true, not both`)
		return
	}
	summary, ok := streamSummary(w, r)
	if !ok {
		return
	}
	ctx := control.WithSource(r.Context(), r.RemoteAddr)
	target := control.Target{Hosts: req.Hosts, All: req.All}
	if acceptsEventStream(r) {
		// The query and its results in one request: no list of every
		// target to encode and read first (a megabyte at 10,000 hosts),
		// and no second request that replays what came meanwhile.
		c, events, cancel, err := a.ctl.StartFollowed(ctx, p.Name, req.SQL, target)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		defer cancel()
		w.Header().Set("Location", "/api/v1/queries/"+c.ID)
		created := QueryCreated{ID: c.ID, Total: c.Summary.Total, Pending: c.Summary.Pending, Offline: c.Summary.Offline}
		var progress *ProgressData
		if summary {
			progress = &ProgressData{Total: c.Summary.Total, Pending: c.Summary.Total}
		}
		a.serveEvents(w, r, http.StatusCreated, events, progress, func(w io.Writer) error {
			b, err := json.Marshal(created)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "event: created\ndata: %s\n\n", b)
			return err
		})
		return
	}
	c, err := a.ctl.StartCampaign(ctx, p.Name, req.SQL, target)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/queries/"+c.ID)
	out := QueryStarted{ID: c.ID, Hosts: make([]QueryTarget, len(c.Hosts))}
	for i, h := range c.Hosts {
		out.Hosts[i] = QueryTarget{ID: h.HostID, Hostname: h.Hostname, Status: h.Status}
	}
	writeJSON(w, http.StatusCreated, out)
}

// QueryCreated is the first event of POST /api/v1/queries answered as a
// stream (Accept: text/event-stream); the campaign's events follow, as
// from GET /api/v1/queries/{id}/stream.
type QueryCreated struct {
	ID      string `json:"id"`
	Total   int    `json:"total"`
	Pending int    `json:"pending"`
	Offline int    `json:"offline"`
}

// acceptsEventStream is true when the client asked for server-sent events.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

func (a *API) listQueries(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	limit, ok := queryLimit(w, r, 50, 1000)
	if !ok {
		return
	}
	cs, err := a.db.ListCampaigns(r.Context(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if cs == nil {
		cs = []state.Campaign{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"queries": cs})
}

func (a *API) getQuery(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	c, err := a.db.GetCampaign(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) removeHost(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id := r.PathValue("id")
	if err := a.db.RemoveHost(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "host.remove", id, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) revokeHost(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id := r.PathValue("id")
	if err := noBody(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.db.Host(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.db.RevokeNodeKeys(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "host.revoke", id, map[string]any{"keys": n})
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	ts, err := a.db.Tokens(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ts == nil {
		ts = []state.Token{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	User string `json:"user"`
	Role string `json:"role"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, err := a.db.CreateToken(r.Context(), req.User, req.Role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "token.create", req.User, map[string]any{"role": req.Role})
	writeJSON(w, http.StatusCreated, map[string]string{"token": tok, "user": req.User, "role": req.Role})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("token id %q is not a number", r.PathValue("id")))
		return
	}
	if err := a.db.RevokeToken(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "token.revoke", strconv.FormatInt(id, 10), nil)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listEnrollSecrets(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	ss, err := a.db.EnrollSecrets(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ss == nil {
		ss = []state.EnrollSecret{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"enroll_secrets": ss})
}

// EnrollSecretRequest is the body of POST /api/v1/enroll-secrets. An
// empty Secret is generated and returned once.
type EnrollSecretRequest struct {
	Name      string `json:"name"`
	Secret    string `json:"secret,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"` // Go duration, e.g. "720h"
}

func (a *API) addEnrollSecret(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req EnrollSecretRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	var expires time.Time
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("expires_in %q: want a positive duration such as 720h", req.ExpiresIn))
			return
		}
		expires = a.now().Add(d)
	}
	secret := req.Secret
	if secret == "" {
		secret = randomToken()
	}
	if err := a.db.AddEnrollSecret(r.Context(), req.Name, secret, expires); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "enroll_secret.add", req.Name, map[string]any{"expires_at": expires})
	writeJSON(w, http.StatusCreated, map[string]any{"name": req.Name, "secret": secret, "expires_at": expires})
}

func (a *API) revokeEnrollSecret(w http.ResponseWriter, r *http.Request, p state.Principal) {
	name := r.PathValue("name")
	if err := a.db.RevokeEnrollSecret(r.Context(), name); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "enroll_secret.revoke", name, nil)
	w.WriteHeader(http.StatusNoContent)
}

// audit records an admin action; a failure is logged (the action is done).
func (a *API) audit(r *http.Request, p state.Principal, action, target string, detail map[string]any) {
	if err := a.db.Audit(r.Context(), state.AuditEntry{Actor: p.Name, Action: action, Target: target,
		Source: r.RemoteAddr, Detail: detail}); err != nil {
		a.logger.Error("writing audit entry", "action", action, "err", err)
	}
}

func (a *API) listCarves(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	cs, err := a.db.Carves(r.Context(), 100)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"carves": cs})
}

// carveData downloads a complete carve (operator: it is a file from a
// host, as sensitive as what a live query can read). Downloads are audited.
func (a *API) carveData(w http.ResponseWriter, r *http.Request, p state.Principal) {
	c, err := a.db.Carve(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if c.CompletedAt.IsZero() {
		writeError(w, http.StatusConflict, fmt.Sprintf("carve %s is incomplete: %d of %d blocks", c.ID, c.Received, c.BlockCount))
		return
	}
	a.audit(r, p, "carve.download", c.ID, map[string]any{"host_id": c.HostID, "bytes": c.CarveSize})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(c.CarveSize, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="carve-%s.tar"`, c.ID))
	if err := a.db.WriteCarve(r.Context(), c.ID, w); err != nil {
		a.logger.Error("sending carve", "carve", c.ID, "err", err)
	}
}

// queryLimit reads the optional ?limit= (def when absent); ok false means
// a 400 saying the allowed range has been written.
func queryLimit(w http.ResponseWriter, r *http.Request, def, max int) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number from 1 to %d", s, max))
		return 0, false
	}
	return n, true
}
