// Package vigil holds the domain types shared by every layer of Vigil:
// hosts, events, rules and alerts, and the error kinds that cross layer
// boundaries. It imports only the standard library; every other package may
// import it.
package vigil

import (
	"errors"
	"time"
)

// Version is the version of Vigil reported by both binaries and in
// osquery_info. It is overridden at link time for releases.
var Version = "0.1.0-dev"

// Error kinds. Packages wrap these with %w so that the HTTP edge can map
// them to status codes without knowing where they came from.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid input")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrConflict     = errors.New("conflict")
	ErrUnavailable  = errors.New("temporarily unavailable")
)

// Host is an enrolled endpoint as the control plane knows it.
type Host struct {
	ID           string    `json:"id"`              // server-assigned, stable
	Identifier   string    `json:"host_identifier"` // what the agent sent (hostname or uuid)
	Hostname     string    `json:"hostname"`
	UUID         string    `json:"uuid,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	OSVersion    string    `json:"os_version,omitempty"`
	AgentName    string    `json:"agent_name,omitempty"` // "vigil-agent" or "osquery"
	AgentVersion string    `json:"agent_version,omitempty"`
	EnrolledAt   time.Time `json:"enrolled_at"`
	LastSeen     time.Time `json:"last_seen"`
	LongPoll     bool      `json:"long_poll,omitempty"` // agent announced the distributed long-poll capability
	RemoteAddr   string    `json:"remote_addr,omitempty"`
	DetailsJSON  string    `json:"-"` // host_details as sent at enrollment
}

// Online reports whether the host checked in within window of now.
func (h Host) Online(now time.Time, window time.Duration) bool {
	return !h.LastSeen.IsZero() && now.Sub(h.LastSeen) <= window
}

// Event is one normalised event bound for an event table of the store
// (process_creation, network_connection, ...). Fields are keyed by the
// schema's column names; values are string, int64, float64, bool, time.Time
// or nil.
type Event struct {
	ID     string         // deterministic: same input, same id (see schema.EventID)
	Table  string         // event table name in the schema
	HostID string         // Host.ID
	Time   time.Time      // when it happened on the host
	Fields map[string]any // column -> value
}

// ResultRow is one row of a scheduled query kept as it came, for the raw
// results table.
type ResultRow struct {
	ID       string // deterministic event id
	HostID   string
	Hostname string
	Query    string // scheduled query name
	Action   string // added, removed, snapshot
	Epoch    int64  // osquery epoch of the log line
	Counter  int64  // osquery counter of the log line
	Time     time.Time
	Columns  map[string]string
	// ColumnsJSON is Columns as store.EncodeColumns encodes them, when
	// ingest had that text at hand (osquery's own JSON often is); "" when
	// not. Stores use it to skip the encoding.
	ColumnsJSON string
}

// Batch is what ingest hands to a store in one write: normalised events and
// raw result rows, already validated.
type Batch struct {
	Events  []Event
	Results []ResultRow
}

// Len is the number of rows in the batch.
func (b Batch) Len() int { return len(b.Events) + len(b.Results) }

// Level is a Sigma rule level, which becomes an alert's severity.
type Level string

// Sigma levels, lowest first.
const (
	LevelInformational Level = "informational"
	LevelLow           Level = "low"
	LevelMedium        Level = "medium"
	LevelHigh          Level = "high"
	LevelCritical      Level = "critical"
)

// Rule is a detection rule as the detection engine and the people API see
// it; the Sigma AST lives in detect/sigma.
type Rule struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Level       Level  `json:"level"`
	Description string `json:"description,omitempty"`
	Source      string `json:"source,omitempty"` // file name or "builtin:<name>"
	Enabled     bool   `json:"enabled"`
}

// AlertStatus is where an alert is in its lifecycle.
type AlertStatus string

// Alert statuses.
const (
	AlertOpen         AlertStatus = "open"
	AlertAcknowledged AlertStatus = "acknowledged"
	AlertClosed       AlertStatus = "closed"
)

// Alert is a rule match on one event (or, for correlations, one group).
type Alert struct {
	ID          int64          `json:"id"`
	RuleID      string         `json:"rule_id"`
	RuleTitle   string         `json:"rule_title"`
	Level       Level          `json:"level"`
	HostID      string         `json:"host_id"`
	Hostname    string         `json:"hostname,omitempty"`
	EventID     string         `json:"event_id"`
	EventTable  string         `json:"event_table"`
	EventTime   time.Time      `json:"event_time"`
	CreatedAt   time.Time      `json:"created_at"`
	Status      AlertStatus    `json:"status"`
	Assignee    string         `json:"assignee,omitempty"`
	CloseReason string         `json:"close_reason,omitempty"`
	Fields      map[string]any `json:"fields,omitempty"` // the matched event's columns
}
