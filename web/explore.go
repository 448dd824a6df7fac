package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/store"
)

// Bounds of the event explorer.
const (
	maxExplorerRows  = 10_000           // rows one explorer query returns
	explorerTimeout  = 30 * time.Second // per explorer query
	maxTimelineRows  = 500              // per event table, half each side of the centre
	defaultTimeline  = 15 * time.Minute // each side of the centre time
	maxTimelineSpan  = 7 * 24 * time.Hour
	maxBulkAlerts    = 1000
	maxRuleTestLimit = 1000
)

// TableSchema is a table live queries can read, for completion in the
// console's query editor.
type TableSchema struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Columns     []TableColumn `json:"columns"`
	Event       bool          `json:"event,omitempty"` // an evented table (rows since the last read)
}

// TableColumn is one column of a TableSchema.
type TableColumn struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Hidden bool   `json:"hidden,omitempty"`
}

// errUnavailable answers endpoints whose hook the server did not wire.
func (a *API) unavailable(w http.ResponseWriter, what string) {
	writeError(w, http.StatusNotImplemented, what+" is not available on this server")
}

// listTables serves GET /api/v1/schema: the agent tables live queries can
// read and the event store's tables the explorer can read.
func (a *API) listTables(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	live := []TableSchema{}
	if a.opts.Tables != nil {
		live = append(live, a.opts.Tables()...)
	}
	events := []TableSchema{}
	for _, t := range schema.Tables() {
		ts := TableSchema{Name: t.Name, Description: t.Description}
		for _, c := range t.AllColumns() {
			ts.Columns = append(ts.Columns, TableColumn{Name: c.Name, Type: string(c.Type)})
		}
		events = append(events, ts)
	}
	writeJSON(w, http.StatusOK, map[string]any{"live": live, "events": events})
}

// EventQuery is the body of POST /api/v1/events/query.
type EventQuery struct {
	SQL string `json:"sql"`
}

// EventRows answers the event explorer: columns, rows in column order, and
// whether more rows existed than were returned.
type EventRows struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
}

func rowsView(rs *store.Rows, limit int) EventRows {
	out := EventRows{Columns: rs.Columns, Rows: rs.Rows, Truncated: rs.Truncated}
	if out.Columns == nil {
		out.Columns = []string{}
	}
	if out.Rows == nil {
		out.Rows = [][]any{}
	}
	if len(out.Rows) > limit {
		out.Rows, out.Truncated = out.Rows[:limit], true
	}
	return out
}

// queryEvents runs a person's read-only SQL over the event store. The
// store refuses anything but a single SELECT; the query is audited.
func (a *API) queryEvents(w http.ResponseWriter, r *http.Request, p state.Principal) {
	if a.opts.Events == nil {
		a.unavailable(w, "the event store")
		return
	}
	var req EventQuery
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.SQL) == "" {
		writeError(w, http.StatusBadRequest, "sql is empty")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	a.audit(r, p, "events.query", "", map[string]any{"sql": req.SQL})
	rs, err := a.opts.Events.Query(ctx, req.SQL)
	if err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil {
			writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("query ran longer than %s", explorerTimeout))
			return
		}
		// The store's message (syntax error, unknown column, not a
		// SELECT) is what the person needs to fix the query.
		if errors.Is(err, vigil.ErrUnavailable) {
			a.fail(w, r, err)
			return
		}
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "duckdb: "))
		return
	}
	writeJSON(w, http.StatusOK, rowsView(rs, maxExplorerRows))
}

// timelineTable is what the timeline shows of one event table: a kind and
// the columns that summarise an event.
type timelineTable struct {
	kind    string
	table   string
	summary []string
}

var timelineTables = []timelineTable{
	{"process", "process_creation", []string{"process_pid", "process_parent_pid", "user_name", "process_command_line", "process_executable"}},
	{"connection", "network_connection", []string{"network_action", "process_pid", "process_executable", "source_ip", "source_port", "destination_ip", "destination_port"}},
	{"file", "file_event", []string{"file_action", "file_path", "process_pid", "process_executable"}},
	{"login", "authentication", []string{"auth_type", "user_name", "source_ip", "terminal", "auth_message", "process_pid"}},
}

// TimelineEvent is one event of a host's timeline.
type TimelineEvent struct {
	Time    time.Time      `json:"time"`
	Kind    string         `json:"kind"` // process, connection, file, login
	Table   string         `json:"table"`
	EventID string         `json:"event_id"`
	Fields  map[string]any `json:"fields"`
}

// hostTimeline serves GET /api/v1/hosts/{id}/timeline?at=&before=&after=:
// processes, connections, files and logins of one host around a time
// (default now), oldest first. Only parameters carry the request's values
// into SQL; table and column names come from the schema.
func (a *API) hostTimeline(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	if a.opts.Events == nil {
		a.unavailable(w, "the event store")
		return
	}
	host, err := a.db.Host(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	at := a.now()
	if s := q.Get("at"); s != "" {
		if at, err = time.Parse(time.RFC3339Nano, s); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", s))
			return
		}
	}
	span := func(name string) (time.Duration, bool) {
		s := q.Get(name)
		if s == "" {
			return defaultTimeline, true
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxTimelineSpan {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want a duration from 0 to %s, such as 15m", name, s, maxTimelineSpan))
			return 0, false
		}
		return d, true
	}
	before, ok := span("before")
	if !ok {
		return
	}
	after, ok := span("after")
	if !ok {
		return
	}
	from, to := at.Add(-before).UTC(), at.Add(after).UTC()
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	events := []TimelineEvent{}
	truncated := false
	for _, tt := range timelineTables {
		t, ok := schema.Lookup(tt.table)
		if !ok {
			continue
		}
		cols := []string{"event_id", "event_time"}
		for _, c := range tt.summary {
			if t.HasColumn(c) {
				cols = append(cols, c)
			}
		}
		// Identifiers are schema constants, never request values. Each
		// side of the centre gets half the rows, nearest first, so a busy
		// host still shows what happened right around the time asked.
		half := maxTimelineRows / 2
		sides := []struct {
			cond, order string
			lo, hi      time.Time
		}{
			{`event_time >= ? AND event_time <= ?`, "DESC", from, at},
			{`event_time > ? AND event_time <= ?`, "ASC", at, to},
		}
		for _, side := range sides {
			query := fmt.Sprintf(`SELECT %s FROM %s WHERE host_id = ? AND %s ORDER BY event_time %s, seq %s LIMIT %d`,
				quoteIdents(cols), quoteIdent(t.Name), side.cond, side.order, side.order, half+1)
			rs, err := a.opts.Events.Query(ctx, query, host.ID, side.lo.UTC(), side.hi.UTC())
			if err != nil {
				a.fail(w, r, fmt.Errorf("timeline of %s: %w", t.Name, err))
				return
			}
			if len(rs.Rows) > half {
				rs.Rows, truncated = rs.Rows[:half], true
			}
			if side.order == "DESC" {
				slices.Reverse(rs.Rows) // oldest first, as the other side
			}
			for _, m := range rs.Maps() {
				ev := TimelineEvent{Kind: tt.kind, Table: t.Name, Fields: map[string]any{}}
				ev.EventID, _ = m["event_id"].(string)
				ev.Time, _ = m["event_time"].(time.Time)
				for _, c := range cols[2:] {
					if v := m[c]; v != nil && v != "" {
						ev.Fields[c] = v
					}
				}
				events = append(events, ev)
			}
		}
	}
	slices.SortStableFunc(events, func(x, y TimelineEvent) int { return x.Time.Compare(y.Time) })
	writeJSON(w, http.StatusOK, map[string]any{"host": host, "from": from, "to": to, "events": events, "truncated": truncated})
}

// quoteIdent quotes an SQL identifier (standard SQL: double the quotes).
// Only schema names reach it.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteIdents(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteIdent(s)
	}
	return strings.Join(q, ", ")
}

// BulkAlertUpdate is the body of POST /api/v1/alerts/bulk.
type BulkAlertUpdate struct {
	IDs []int64 `json:"ids"`
	AlertUpdate
}

// bulkUpdateAlerts applies one lifecycle change to many alerts; each
// change is audited. It answers which ids failed and why.
func (a *API) bulkUpdateAlerts(w http.ResponseWriter, r *http.Request, p state.Principal) {
	var req BulkAlertUpdate
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxBulkAlerts {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("ids: want 1 to %d alert ids, got %d", maxBulkAlerts, len(req.IDs)))
		return
	}
	if req.Status == vigil.AlertClosed && strings.TrimSpace(req.Reason) == "" {
		writeError(w, http.StatusBadRequest, "closing alerts needs a close_reason")
		return
	}
	switch req.Status {
	case vigil.AlertOpen, vigil.AlertAcknowledged, vigil.AlertClosed:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q: want open, acknowledged or closed", req.Status))
		return
	}
	updated := 0
	failed := map[string]string{}
	for _, id := range req.IDs {
		if err := a.db.SetAlertStatus(r.Context(), id, req.Status, req.Assignee, req.Reason); err != nil {
			if errors.Is(err, vigil.ErrNotFound) {
				failed[strconv.FormatInt(id, 10)] = "not found"
				continue
			}
			a.fail(w, r, err)
			return
		}
		updated++
		a.audit(r, p, "alert.update", strconv.FormatInt(id, 10), map[string]any{"status": req.Status, "assignee": req.Assignee, "reason": req.Reason, "bulk": true})
	}
	writeJSON(w, http.StatusOK, map[string]any{"updated": updated, "failed": failed})
}

// RuleView is a loaded detection rule.
type RuleView struct {
	vigil.Rule
	HasSource bool `json:"has_source"` // GET /api/v1/rules/{id}/source serves it
	CanToggle bool `json:"can_toggle"` // this server can enable and disable rules
}

func (a *API) listRules(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	if a.opts.Rules == nil {
		a.unavailable(w, "the rule list")
		return
	}
	rules := a.opts.Rules()
	out := make([]RuleView, len(rules))
	for i, ru := range rules {
		out[i] = RuleView{Rule: ru, HasSource: a.opts.RuleSource != nil, CanToggle: a.opts.SetRuleEnabled != nil}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

func (a *API) findRule(id string) (vigil.Rule, bool) {
	if a.opts.Rules == nil {
		return vigil.Rule{}, false
	}
	for _, ru := range a.opts.Rules() {
		if ru.ID == id {
			return ru, true
		}
	}
	return vigil.Rule{}, false
}

// ruleSource serves a rule's YAML, to read it or edit it in the test box.
func (a *API) ruleSource(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	id := r.PathValue("id")
	if a.opts.RuleSource == nil {
		a.unavailable(w, "rule sources")
		return
	}
	if _, ok := a.findRule(id); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no rule %q", id))
		return
	}
	src, err := a.opts.RuleSource(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "yaml": string(src)})
}

// RuleEnable is the body of PUT /api/v1/rules/{id}/enabled.
type RuleEnable struct {
	Enabled bool `json:"enabled"`
}

func (a *API) setRuleEnabled(w http.ResponseWriter, r *http.Request, p state.Principal) {
	id := r.PathValue("id")
	if a.opts.SetRuleEnabled == nil {
		a.unavailable(w, "enabling and disabling rules")
		return
	}
	var req RuleEnable
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, ok := a.findRule(id); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no rule %q", id))
		return
	}
	if err := a.opts.SetRuleEnabled(r.Context(), id, req.Enabled); err != nil {
		a.fail(w, r, err)
		return
	}
	a.audit(r, p, "rule.enable", id, map[string]any{"enabled": req.Enabled})
	w.WriteHeader(http.StatusNoContent)
}

// RuleTest is the body of POST /api/v1/rules/test: a Sigma rule (YAML) to
// run over stored events without raising alerts.
type RuleTest struct {
	YAML  string `json:"yaml"`
	Limit int    `json:"limit,omitempty"` // rows to return; default 100
}

// RuleTestResult answers a rule test: the compiled SQL and the matches.
type RuleTestResult struct {
	Title string `json:"title"`
	Table string `json:"table"`
	SQL   string `json:"sql"`
	EventRows
}

// testRule compiles a detection rule for the store's dialect and runs it
// over stored events. It raises no alert and moves no watermark.
func (a *API) testRule(w http.ResponseWriter, r *http.Request, p state.Principal) {
	if a.opts.Events == nil {
		a.unavailable(w, "the event store")
		return
	}
	var req RuleTest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Limit == 0 {
		req.Limit = 100
	}
	if req.Limit < 1 || req.Limit > maxRuleTestLimit {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %d: want 1 to %d", req.Limit, maxRuleTestLimit))
		return
	}
	rule, err := sigma.ParseOne("rule.yml", []byte(req.YAML))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d, err := sigma.DialectFor(a.opts.EventsDialect)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := sigma.Compile(rule, sigma.Options{Dialect: d})
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	query := sigma.SelectSQL(d, q) + " ORDER BY " + quoteIdent("event_time") + " DESC LIMIT " + strconv.Itoa(req.Limit+1)
	ctx, cancel := context.WithTimeout(r.Context(), explorerTimeout)
	defer cancel()
	a.audit(r, p, "rule.test", rule.ID, map[string]any{"title": rule.Title})
	rs, err := a.opts.Events.Query(ctx, query)
	if err != nil {
		a.fail(w, r, fmt.Errorf("running rule %q: %w", rule.Title, err))
		return
	}
	writeJSON(w, http.StatusOK, RuleTestResult{Title: rule.Title, Table: q.Table, SQL: query, EventRows: rowsView(rs, req.Limit)})
}
