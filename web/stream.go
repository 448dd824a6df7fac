package web

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

// Server-sent event payloads of GET /api/v1/queries/{id}/stream.
type (
	// ResultData is the data of a "result" event. Columns is the rows'
	// column order (the SELECT's) when the host's answer gave one; each
	// row's keys are written in that order too.
	ResultData struct {
		HostID   string              `json:"host_id"`
		Hostname string              `json:"hostname"`
		Columns  []string            `json:"columns,omitempty"`
		Rows     []map[string]string `json:"rows"`
	}
	// StatusData is the data of a "status" event.
	StatusData struct {
		HostID   string `json:"host_id"`
		Hostname string `json:"hostname"`
		Status   string `json:"status"` // ok, error, offline, timeout
		Error    string `json:"error,omitempty"`
	}
	// ProgressData is the data of a "progress" event, the stream's
	// only event between created and done with ?events=summary.
	ProgressData struct {
		Total   int `json:"total"`
		Pending int `json:"pending"`
		OK      int `json:"ok"`
		Error   int `json:"error"`
		Timeout int `json:"timeout"`
		Offline int `json:"offline"`
	}
	// DoneData is the data of the final "done" event.
	DoneData struct {
		Total   int `json:"total"`
		OK      int `json:"ok"`
		Error   int `json:"error"`
		Timeout int `json:"timeout"`
		Offline int `json:"offline"`
	}
)

// MarshalJSON writes the event data as its fields' tags say, with each
// row's keys in Columns' order (then any other key, sorted). It writes
// the bytes itself, compact and escaped as encoding/json would: one
// result event per host is the bulk of a large campaign's stream.
func (d ResultData) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"host_id":`...)
	b = osquery.AppendString(b, d.HostID)
	b = append(b, `,"hostname":`...)
	b = osquery.AppendString(b, d.Hostname)
	if len(d.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = osquery.AppendStrings(b, d.Columns)
	}
	b = append(b, `,"rows":`...)
	b = osquery.AppendRows(b, d.Rows, d.Columns)
	return append(b, '}'), nil
}

// heartbeat keeps proxies from closing a quiet stream.
const heartbeat = 15 * time.Second

// progressEvery is how often a summary stream tells how many hosts have
// answered, when some have since it last did.
const progressEvery = 250 * time.Millisecond

// streamSummary reads ?events=: "all" (the default) streams every host's
// rows and status; "summary" only counts, for a watcher of a large
// campaign that needs neither, and spares both ends 20,000 events at
// 10,000 hosts.
func streamSummary(w http.ResponseWriter, r *http.Request) (summary, ok bool) {
	switch v := r.URL.Query().Get("events"); v {
	case "", "all":
		return false, true
	case "summary":
		return true, true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("events %q: want all or summary", v))
		return false, false
	}
}

func (a *API) streamQuery(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	id := r.PathValue("id")
	summary, ok := streamSummary(w, r)
	if !ok {
		return
	}
	// Every campaign has at least one host: none means no such campaign.
	s, err := a.db.CampaignSummary(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if s.Total == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("query %q not found", id))
		return
	}
	events, cancel := a.ctl.Subscribe(id)
	defer cancel()
	var progress *ProgressData
	if summary {
		progress = &ProgressData{Total: s.Total, Pending: s.Total}
	}
	a.serveEvents(w, r, http.StatusOK, events, progress, nil)
}

// serveEvents writes a campaign's events as server-sent events until done
// (or the client leaves); first, if any, is written before them. Given
// progress (the campaign's total, all pending), it writes only progress
// events, counting statuses into it, and done.
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request, status int, events <-chan control.CampaignEvent, progress *ProgressData, first func(w io.Writer) error) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's WriteTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(status)
	if first != nil {
		if err := first(w); err != nil {
			return
		}
	}
	rc.Flush()

	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var progressTick <-chan time.Time
	counted := false // statuses counted since the last progress event
	if progress != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		progressTick = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			rc.Flush()
		case <-progressTick:
			if !counted {
				continue
			}
			counted = false
			b, _ := json.Marshal(progress)
			if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", b); err != nil {
				return
			}
			rc.Flush()
		case ev, ok := <-events:
			if !ok {
				return
			}
			if progress != nil && ev.Type != control.EventDone {
				if ev.Type == control.EventStatus {
					progress.count(ev.Status)
					counted = true
				}
				continue
			}
			name, data := sseData(ev)
			var b []byte
			var err error
			if rd, ok := data.(ResultData); ok {
				b, err = rd.MarshalJSON() // compact already: json.Marshal would scan it again
			} else {
				b, err = json.Marshal(data)
			}
			if err != nil {
				a.logger.Error("encoding event", "err", err)
				return
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
				return
			}
			// Flush when no more events wait, not after each one: a
			// campaign to 10,000 hosts would otherwise flush 20,000 times.
			if len(events) == 0 || ev.Type == control.EventDone {
				rc.Flush()
			}
			if ev.Type == control.EventDone {
				return
			}
		}
	}
}

// count moves one host from pending to its final status.
func (p *ProgressData) count(status string) {
	switch status {
	case state.StatusOK:
		p.OK++
	case state.StatusError:
		p.Error++
	case state.StatusTimeout:
		p.Timeout++
	case state.StatusOffline:
		p.Offline++
	default:
		return
	}
	p.Pending--
}

func sseData(ev control.CampaignEvent) (string, any) {
	switch ev.Type {
	case control.EventResult:
		rows := ev.Rows
		if rows == nil {
			rows = []map[string]string{}
		}
		return ev.Type, ResultData{HostID: ev.HostID, Hostname: ev.Hostname, Columns: ev.Columns, Rows: rows}
	case control.EventStatus:
		return ev.Type, StatusData{HostID: ev.HostID, Hostname: ev.Hostname, Status: ev.Status, Error: ev.Error}
	default:
		s := ev.Summary
		return control.EventDone, DoneData{Total: s.Total, OK: s.OK, Error: s.Error, Timeout: s.Timeout, Offline: s.Offline}
	}
}

// exportAudit returns audit entries after ?after= (an id), oldest first,
// up to ?limit= (default 1000, at most 10000), as JSON or, with
// ?format=ndjson, one JSON object per line for log shippers. next_after
// is the id to pass for the next page.
func (a *API) exportAudit(w http.ResponseWriter, r *http.Request, _ state.Principal) {
	q := r.URL.Query()
	f := state.AuditFilter{Action: q.Get("action"), Limit: 1000}
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after %q: want an entry id", s))
			return
		}
		f.AfterID = n
	}
	lim, ok := queryLimit(w, r, f.Limit, 10_000)
	if !ok {
		return
	}
	f.Limit = lim
	entries, err := a.db.AuditLog(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	next := f.AfterID
	if len(entries) > 0 {
		next = entries[len(entries)-1].ID
	}
	switch q.Get("format") {
	case "", "json":
		if entries == nil {
			entries = []state.AuditEntry{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "next_after": next})
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Next-After", strconv.FormatInt(next, 10))
		enc := json.NewEncoder(w)
		for _, e := range entries {
			enc.Encode(e)
		}
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format %q: want json or ndjson", q.Get("format")))
	}
}

func randomToken() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
