package table

import (
	"context"
	"log/slog"
	"time"
)

// Options configure an Engine. The zero value is usable.
type Options struct {
	// Root is the filesystem root under which tables read /proc, /etc,
	// /var/lib/dpkg, ...; "" means "/". Tests point it at fixture trees.
	Root string
	// Logger receives debug messages about unreadable sources; nil discards.
	Logger *slog.Logger
	// Events feeds the event tables; nil makes them empty.
	Events EventSource
	// Info describes the running agent for osquery_info and
	// osquery_schedule; nil leaves those tables mostly empty.
	Info func() AgentInfo
	// EventStats describes the event publishers, subscribers and loggers
	// for osquery_events and vigil_event_drops; nil leaves them empty.
	EventStats func() []EventStat
	// Now is the clock of the time table; nil means time.Now.
	Now func() time.Time
	// MaxConns bounds the number of queries that run at the same time;
	// 0 means 2. Each connection holds its own set of virtual tables.
	MaxConns int
}

// AgentInfo describes the running agent (osquery_info, osquery_schedule).
type AgentInfo struct {
	Version, ConfigHash, Extensions, BuildPlatform, UUID, InstanceID string

	PID         int
	StartTime   int64
	Watcher     int
	ConfigValid bool
	Schedule    []ScheduleInfo
}

// ScheduleInfo is one row of osquery_schedule.
type ScheduleInfo struct {
	Name, Query string
	Interval    int

	Executions, LastExecuted, Denylisted, Output, WallTimeMs, UserTime, SystemTime, AverageMemory int64

	// The last run's figures (osquery_schedule's last_* columns); zero
	// values are reported as 0.
	LastWallTimeMs, LastUserTime, LastSystemTime, LastMemory int64
}

// EventSource is implemented by agent/event's buffer.
type EventSource interface {
	// Rows returns the buffered rows of an event table (process_events,
	// socket_events, file_events, user_events) whose event id is greater
	// than after, oldest first, and the id of the last row returned (after
	// if none).
	Rows(table string, after uint64) (rows []map[string]string, last uint64)
}

// Column types as osquery's specs name them.
const (
	TypeText           = "TEXT"
	TypeInteger        = "INTEGER"
	TypeBigint         = "BIGINT"
	TypeUnsignedBigint = "UNSIGNED_BIGINT"
	TypeDouble         = "DOUBLE"
	TypeDatetime       = "DATETIME"
	TypeBlob           = "BLOB"
)

// Column is one column of a table's schema.
type Column struct {
	Name string
	// Type is TEXT, INTEGER, BIGINT, UNSIGNED_BIGINT, DOUBLE, DATETIME or
	// BLOB, as in the spec.
	Type string
	// Hidden columns are left out of SELECT * but selectable by name.
	Hidden bool
	// Required columns: the table needs an = (or LIKE) constraint on at
	// least one of them.
	Required bool
	// Index columns are pushed down to the generator when constrained.
	Index bool
	// Collate is the column's collation: "" (binary), "nocase", or one of
	// osquery's version collations ("version", "version_dpkg",
	// "version_rhel", "version_arch"), which compare version strings
	// segment by segment.
	Collate string
}

// Schema describes one table.
type Schema struct {
	Name        string
	Description string
	Columns     []Column
	// Event tables read from Options.Events.
	Event bool
}

// Result is the outcome of a query. Values are rendered as osquery renders
// them in results: strings, integers in decimal, NULL as "".
type Result struct {
	Columns []string
	Rows    []map[string]string
}

// Querier is what the agent runtime needs from an Engine; declared here so
// consumers can hand-write fakes against the same contract.
type Querier interface {
	Query(ctx context.Context, sql string) (Result, error)
	QueryAs(ctx context.Context, consumer, sql string) (Result, error)
}

var _ Querier = (*Engine)(nil)
