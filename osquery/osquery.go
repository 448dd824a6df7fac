// Package osquery defines the wire types of the osquery TLS remote API and of
// osquery's result and status log lines, exactly as osquery sends and
// expects them (reference/osquery/docs/wiki/deployment/remote.md and
// logging.md). Both the agent and the server use it; it imports only the
// standard library and never either of them.
package osquery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Endpoint paths of the remote API, as osquery's --*_tls_endpoint flags
// default to in Vigil's deployment.
const (
	PathEnroll           = "/api/v1/osquery/enroll"
	PathConfig           = "/api/v1/osquery/config"
	PathLog              = "/api/v1/osquery/log"
	PathDistributedRead  = "/api/v1/osquery/distributed/read"
	PathDistributedWrite = "/api/v1/osquery/distributed/write"
	PathCarveBegin       = "/api/v1/osquery/carve/begin"
	PathCarveBlock       = "/api/v1/osquery/carve/block"
)

// Capability versions Vigil's agent may announce in host_details under
// "vigil" (see CapabilityVersion). Plain osquery announces none and gets the
// plain protocol.
//
// History:
//
//	1: distributed/read may be held open by the server (long poll) until a
//	   query is pending or the wait the agent asked for has passed.
//	   distributed/write with vigil_wait_ms is held the same way once
//	   its answers are recorded (the status is sent first), and answers
//	   with the next queries and vigil_held; a server that does not hold
//	   it answers {} and the agent reads as before.
//	2: /log with vigil_wait_ms is held the same way once its lines are
//	   durable. The status of every request held as the next read carries
//	   HeaderHeld, so that the agent knows the request is recorded before
//	   the hold ends. A server that does not hold a log answers {} and the
//	   agent holds a read until its next log send.
const CapabilityVersion = 2

// HeaderHeld is set on the status of a distributed/write or log that the
// server holds as the next read (capability 2): the answers or lines are
// recorded, whatever becomes of the hold.
const HeaderHeld = "Vigil-Held"

// EnrollRequest is the body of POST /enroll.
type EnrollRequest struct {
	EnrollSecret   string                       `json:"enroll_secret"`
	HostIdentifier string                       `json:"host_identifier"`
	PlatformType   string                       `json:"platform_type,omitempty"`
	HostDetails    map[string]map[string]string `json:"host_details,omitempty"`
}

// EnrollResponse is the body answered to /enroll.
type EnrollResponse struct {
	NodeKey     string `json:"node_key,omitempty"`
	NodeInvalid bool   `json:"node_invalid,omitempty"`
}

// NodeRequest is the body of config and distributed/read requests.
type NodeRequest struct {
	NodeKey string `json:"node_key"`
	// VigilWait, sent only by Vigil's agent, asks the server to hold
	// distributed/read open up to this many milliseconds (capability 1).
	VigilWait int `json:"vigil_wait_ms,omitempty"`
}

// NodeInvalidResponse is what every endpoint answers to an unknown node key.
type NodeInvalidResponse struct {
	NodeInvalid bool `json:"node_invalid"`
}

// Config is osquery's configuration format, as read from a file by the
// filesystem config plugin and as served by /config.
type Config struct {
	Schedule   map[string]ScheduledQuery  `json:"schedule,omitempty"`
	Packs      map[string]json.RawMessage `json:"packs,omitempty"`
	Options    map[string]any             `json:"options,omitempty"`
	Decorators *Decorators                `json:"decorators,omitempty"`
	FilePaths  map[string][]string        `json:"file_paths,omitempty"`
	Exclude    map[string][]string        `json:"exclude_paths,omitempty"`
	// NodeInvalid is set by the server when the node key is unknown.
	NodeInvalid bool `json:"node_invalid,omitempty"`
}

// ScheduledQuery is one entry of a schedule or pack.
type ScheduledQuery struct {
	Query    string `json:"query"`
	Interval int    `json:"interval"`
	Snapshot bool   `json:"snapshot,omitempty"`
	// Removed is a pointer because its default (absent) is true.
	Removed  *bool  `json:"removed,omitempty"`
	Platform string `json:"platform,omitempty"`
	Version  string `json:"version,omitempty"`
	Shard    int    `json:"shard,omitempty"`
	Denylist *bool  `json:"denylist,omitempty"`
}

// LogsRemoved reports whether "removed" rows are to be logged.
func (q ScheduledQuery) LogsRemoved() bool { return q.Removed == nil || *q.Removed }

// Decorators are queries whose single row is added to every log line.
type Decorators struct {
	Load     []string            `json:"load,omitempty"`
	Always   []string            `json:"always,omitempty"`
	Interval map[string][]string `json:"interval,omitempty"`
}

// Log types of a LogRequest.
const (
	LogTypeResult = "result"
	LogTypeStatus = "status"
)

// LogRequest is the body of POST /log. Data holds one JSON object per log
// line; they are decoded one by one so that a bad line does not lose the
// others.
type LogRequest struct {
	NodeKey string            `json:"node_key"`
	LogType string            `json:"log_type"`
	Data    []json.RawMessage `json:"data"`
	// VigilWait, sent only by Vigil's long-polling agent, asks the server
	// to hold the request open like a distributed/read once the lines are
	// durable, and to answer with the queries that came: a long-polling
	// agent's log send then also serves as its next read (one request
	// per log period instead of a log and then a read).
	VigilWait int `json:"vigil_wait_ms,omitempty"`
}

// LogResponse is the answer to /log: {} for osquery; a log held for
// Vigil's agent (VigilWait) says so with VigilHeld and carries the
// queries that came while it was held, as a held distributed/write does.
type LogResponse = DistributedWriteResponse

// Result actions.
const (
	ActionAdded    = "added"
	ActionRemoved  = "removed"
	ActionSnapshot = "snapshot"
)

// ResultLine is one result log line in osquery's event format (action
// added/removed with columns), snapshot format (action snapshot with
// snapshot rows) or batch format (diffResults).
type ResultLine struct {
	Name           string              `json:"name"`
	HostIdentifier string              `json:"hostIdentifier"`
	CalendarTime   string              `json:"calendarTime"`
	UnixTime       Int                 `json:"unixTime"`
	Epoch          Int                 `json:"epoch"`
	Counter        Int                 `json:"counter"`
	Numerics       bool                `json:"numerics"`
	Decorations    map[string]string   `json:"decorations,omitempty"`
	Action         string              `json:"action,omitempty"`
	Columns        map[string]string   `json:"columns,omitempty"`
	Snapshot       []map[string]string `json:"snapshot,omitempty"`
	DiffResults    *DiffResults        `json:"diffResults,omitempty"`
}

// DiffResults is the batch format's added/removed rows.
type DiffResults struct {
	Added   []map[string]string `json:"added"`
	Removed []map[string]string `json:"removed"`
}

// StatusLine is one status log line.
type StatusLine struct {
	HostIdentifier string            `json:"hostIdentifier"`
	CalendarTime   string            `json:"calendarTime"`
	UnixTime       Int               `json:"unixTime"`
	Severity       Int               `json:"severity"`
	Filename       string            `json:"filename"`
	Line           Int               `json:"line"`
	Message        string            `json:"message"`
	Version        string            `json:"version,omitempty"`
	Decorations    map[string]string `json:"decorations,omitempty"`
}

// CalendarTime formats t as osquery does in calendarTime.
func CalendarTime(t time.Time) string {
	return t.UTC().Format("Mon Jan _2 15:04:05 2006 UTC")
}

// DistributedReadResponse is the answer to distributed/read.
type DistributedReadResponse struct {
	Queries     map[string]string `json:"queries"`
	Discovery   map[string]string `json:"discovery,omitempty"`
	Accelerate  int               `json:"accelerate,omitempty"`
	NodeInvalid bool              `json:"node_invalid,omitempty"`
}

// DistributedWriteRequest is the body of distributed/write.
type DistributedWriteRequest struct {
	NodeKey  string                         `json:"node_key"`
	Queries  map[string][]map[string]string `json:"queries"`
	Statuses map[string]Int                 `json:"statuses,omitempty"`
	Messages map[string]string              `json:"messages,omitempty"`
	// Columns is each query's column order (query id -> column names),
	// which a map row cannot keep. It is not part of the wire format:
	// UnmarshalJSON fills it from the key order of each query's first row
	// (osquery writes a row's keys in its SELECT's order) and MarshalJSON
	// writes every row's keys in this order (see distributed.go). Queries
	// without rows have none.
	Columns map[string][]string `json:"-"`
	// VigilWait, sent only by Vigil's long-polling agent, asks the server
	// to hold the write open like a distributed/read once the results are
	// recorded, and to answer with the next queries: one request per
	// query instead of a write and then a read.
	VigilWait int `json:"vigil_wait_ms,omitempty"`
}

// DistributedWriteResponse is the answer to distributed/write: {} for
// osquery; a write held for Vigil's agent (VigilWait) says so with
// VigilHeld and carries the queries that came while it was held.
type DistributedWriteResponse struct {
	Queries     map[string]string `json:"queries,omitempty"`
	VigilHeld   bool              `json:"vigil_held,omitempty"`
	NodeInvalid bool              `json:"node_invalid,omitempty"`
}

// Int is an integer that osquery sends as a JSON number or as a string,
// depending on version and the numerics setting. It marshals as a number.
type Int int64

// UnmarshalJSON accepts 12, "12" and "". It parses with strconv directly:
// it runs for three fields of every result line.
func (n *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b[1:len(b)-1], '\\') < 0 {
			s = string(b[1 : len(b)-1])
		} else if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*n = 0
			return nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("osquery: %q is not an integer", s)
		}
		*n = Int(v)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*n = 0
		return nil
	}
	// A JSON number in integer form is exactly what ParseInt accepts
	// (encoding/json never passes a leading "+").
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("osquery: %s is not an integer", b)
	}
	*n = Int(v)
	return nil
}
