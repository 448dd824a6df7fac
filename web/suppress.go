package web

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/state"
)

// MaxSuppression is the longest a suppression may last: silencing is for
// a known, temporary cause, and one that must go on is created again,
// deliberately, when it ends.
const MaxSuppression = 365 * 24 * time.Hour

// Bounds of a suppression's text fields.
const (
	maxSuppressionID     = 256
	maxSuppressionValue  = 4096
	maxSuppressionReason = 1000
)

// fieldName is an event field as alerts carry them (schema columns such
// as process_command_line).
var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,127}$`)

// SuppressionRequest is the body of POST /api/v1/suppressions. A match is
// silenced when every criterion given holds: RuleID is the rule's id,
// Host the host id or hostname, Field's value (as text) equals Value.
// The expiry is ExpiresIn (a duration: "90m", "24h", "7d") or ExpiresAt
// (RFC 3339), one of the two.
type SuppressionRequest struct {
	RuleID    string `json:"rule_id"`
	Host      string `json:"host"`
	Field     string `json:"field"`
	Value     string `json:"value"`
	Reason    string `json:"reason"`
	ExpiresIn string `json:"expires_in"`
	ExpiresAt string `json:"expires_at"`
}

// SuppressionsList answers GET /api/v1/suppressions.
type SuppressionsList struct {
	Suppressions []state.Suppression `json:"suppressions"`
}

func (a *API) listSuppressions(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	withExpired := false
	switch v := r.URL.Query().Get("expired"); v {
	case "", "0", "false":
	case "1", "true":
		withExpired = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("expired %q: want 1 (include expired suppressions) or 0", v))
		return
	}
	ss, err := a.db.Suppressions(r.Context(), withExpired)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SuppressionsList{Suppressions: ss})
}

// createSuppression validates the request and stores it; state writes the
// audit entry in the same transaction.
func (a *API) createSuppression(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req SuppressionRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	s, msg := a.suppressionOf(req)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	s, err := a.db.AddSuppression(r.Context(), s, p.Name, r.RemoteAddr)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/suppressions/"+strconv.FormatInt(s.ID, 10))
	writeJSON(w, http.StatusCreated, s)
}

// suppressionOf checks a request and returns the suppression it asks for,
// or what is wrong with it.
func (a *API) suppressionOf(req SuppressionRequest) (state.Suppression, string) {
	s := state.Suppression{RuleID: strings.TrimSpace(req.RuleID), Host: strings.TrimSpace(req.Host),
		Field: strings.TrimSpace(req.Field), Value: req.Value, Reason: strings.TrimSpace(req.Reason)}
	switch {
	case s.RuleID == "" && s.Host == "" && s.Field == "":
		return s, "a suppression needs something to match: rule_id, host or field (with value)"
	case len(s.RuleID) > maxSuppressionID:
		return s, fmt.Sprintf("rule_id is %d bytes long; at most %d", len(s.RuleID), maxSuppressionID)
	case len(s.Host) > maxSuppressionID:
		return s, fmt.Sprintf("host is %d bytes long; at most %d", len(s.Host), maxSuppressionID)
	case s.Field != "" && !fieldName.MatchString(s.Field):
		return s, fmt.Sprintf("field %q is not an event field name (letters, digits, _ and ., at most 128)", s.Field)
	case s.Field == "" && s.Value != "":
		return s, fmt.Sprintf("value %q without a field: name the field it must equal", s.Value)
	case s.Field != "" && s.Value == "":
		return s, fmt.Sprintf("field %q without a value: give the value it must equal", s.Field)
	case len(s.Value) > maxSuppressionValue:
		return s, fmt.Sprintf("value is %d bytes long; at most %d", len(s.Value), maxSuppressionValue)
	case s.Reason == "":
		return s, "reason is empty: say why these matches may be silenced (it is audited)"
	case len(s.Reason) > maxSuppressionReason:
		return s, fmt.Sprintf("reason is %d bytes long; at most %d", len(s.Reason), maxSuppressionReason)
	}
	if s.RuleID != "" && a.opts.Rules != nil && !a.ruleLoaded(s.RuleID) {
		return s, fmt.Sprintf("rule_id %q is not a rule loaded on this server (GET /api/v1/rules lists them)", s.RuleID)
	}
	now := a.now()
	switch {
	case req.ExpiresIn == "" && req.ExpiresAt == "":
		return s, `no expiry: give expires_in (e.g. "24h", "7d") or expires_at (RFC 3339)`
	case req.ExpiresIn != "" && req.ExpiresAt != "":
		return s, "give either expires_in or expires_at, not both"
	case req.ExpiresIn != "":
		d, err := parseDays(req.ExpiresIn)
		if err != nil || d <= 0 {
			return s, fmt.Sprintf(`expires_in %q: want a positive duration such as "90m", "24h" or "7d"`, req.ExpiresIn)
		}
		if d > MaxSuppression {
			return s, fmt.Sprintf("expires_in %q is longer than %d days, the most a suppression may last", req.ExpiresIn, MaxSuppression/(24*time.Hour))
		}
		s.ExpiresAt = now.Add(d)
	default:
		t, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			return s, fmt.Sprintf("expires_at %q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", req.ExpiresAt)
		}
		if !t.After(now) {
			return s, fmt.Sprintf("expires_at %s is not in the future", req.ExpiresAt)
		}
		if t.Sub(now) > MaxSuppression {
			return s, fmt.Sprintf("expires_at %s is more than %d days away, the most a suppression may last", req.ExpiresAt, MaxSuppression/(24*time.Hour))
		}
		s.ExpiresAt = t
	}
	return s, ""
}

func (a *API) ruleLoaded(id string) bool {
	for _, r := range a.opts.Rules() {
		if r.ID == id {
			return true
		}
	}
	return false
}

// parseDays is time.ParseDuration plus whole days ("7d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100_000 {
			return 0, fmt.Errorf("bad number of days %q", n)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// expireSuppression ends a suppression now; it stays listed (with
// ?expired=1) with its hits. Audited by state.
func (a *API) expireSuppression(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("suppression id %q is not a number", r.PathValue("id")))
		return
	}
	if err := a.db.ExpireSuppression(r.Context(), id, p.Name, r.RemoteAddr); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
