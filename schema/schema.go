// Package schema is Vigil's normalised, versioned event schema: the event
// tables grouped by Sigma logsource category with ECS-style flat columns,
// the mapping from osquery result rows to them, and the mapping from Sigma
// taxonomy fields to their columns. It is defined once here and used by
// ingest (to normalise), the stores (to create tables) and detect/sigma (to
// resolve fields). It imports only the standard library and the root
// package.
package schema

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Version is the schema version. Bump it with every change to Tables and
// record what changed in History; stores migrate from any older version.
const Version = 2

// History records what each Version changed, for migrations and docs.
var History = map[int]string{
	1: "process_creation, network_connection, file_event, authentication; query_results",
	2: "a view results_<query> per scheduled query over query_results, one text column per result column " +
		"(store.ResultViewName), catalogued in " + ResultViewsTable + "; stores create the views of existing rows when they migrate",
}

// ResultViewsTable catalogues the per-query result views: view name, query
// name and the result column names the view was made from.
const ResultViewsTable = "vigil_result_views"

// Type is a column type, named as both DuckDB and our docs spell it; store
// backends translate to their own types.
type Type string

// Column types.
const (
	Text      Type = "VARCHAR"
	BigInt    Type = "BIGINT"
	Double    Type = "DOUBLE"
	Bool      Type = "BOOLEAN"
	Timestamp Type = "TIMESTAMP"
)

// Column is one column of an event table.
type Column struct {
	Name        string
	Type        Type
	Description string
}

// Common columns every event table starts with (see store.Col*).
var Common = []Column{
	{"event_id", Text, "Deterministic event id; the store keeps one row per id"},
	{"host_id", Text, "Vigil host id"},
	{"hostname", Text, "Host name at ingest"},
	{"event_time", Timestamp, "When the event happened on the host (UTC)"},
	{"ingested_at", Timestamp, "When the server made the event durable (UTC)"},
	{"seq", BigInt, "Store-assigned, strictly increasing per table"},
}

// Table is one event table: a Sigma logsource category.
type Table struct {
	Name        string   // e.g. process_creation; also the Sigma category
	Description string   //
	Columns     []Column // table's own columns, after Common
	// Fields maps Sigma taxonomy field names to Columns names.
	Fields map[string]string
	// Sources are the osquery tables whose rows normalise into this table.
	Sources []Source
}

// Source normalises rows of one osquery table.
type Source struct {
	OsqueryTable string
	// Map turns one osquery row (all values strings, as osquery logs them)
	// into column values and the event's time (zero when the row has none;
	// ingest then uses the log line's unixTime).
	Map func(row map[string]string) (map[string]any, time.Time)
}

// AllColumns returns Common followed by the table's own columns.
func (t Table) AllColumns() []Column {
	out := make([]Column, 0, len(Common)+len(t.Columns))
	out = append(out, Common...)
	return append(out, t.Columns...)
}

// HasColumn reports whether name is a column of t (including Common).
func (t Table) HasColumn(name string) bool {
	for _, c := range t.AllColumns() {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Tables returns every event table, in a stable order.
func Tables() []Table { return tables }

// Lookup finds an event table by name.
func Lookup(name string) (Table, bool) {
	for _, t := range tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// ForOsqueryTable returns the event table and source that rows of the
// given osquery table normalise into.
func ForOsqueryTable(osq string) (Table, Source, bool) {
	for _, t := range tables {
		for _, s := range t.Sources {
			if s.OsqueryTable == osq {
				return t, s, true
			}
		}
	}
	return Table{}, Source{}, false
}

// SigmaField maps a Sigma taxonomy field of a logsource category to a
// column. Matching is case-sensitive on the Sigma name, as the taxonomy is.
func SigmaField(category, field string) (string, bool) {
	t, ok := Lookup(category)
	if !ok {
		return "", false
	}
	c, ok := t.Fields[field]
	return c, ok
}

// ResultsTable is the raw results table: every scheduled query's rows kept
// as they came (columns as JSON), queryable by query name.
const ResultsTable = "query_results"

// ResultsColumns are the raw results table's columns after Common.
var ResultsColumns = []Column{
	{"query_name", Text, "Scheduled query name as the agent logged it"},
	{"action", Text, "added, removed or snapshot"},
	{"epoch", BigInt, "osquery epoch"},
	{"counter", BigInt, "osquery counter"},
	{"columns", Text, "The row's columns as a JSON object of strings"},
}

// EventID returns the deterministic id of one row of one result log line.
// The same line replayed gives the same id, so stores can drop duplicates;
// the row's content is part of the id so that an agent whose counter starts
// again cannot make two different rows collide.
func EventID(hostID, query string, epoch, counter int64, action string, index int, row map[string]string) string {
	var keyStack [32]string
	keys := keyStack[:0]
	for k := range row {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return EventIDSorted(hostID, query, epoch, counter, action, index, keys, row)
}

// EventIDSorted is EventID for a caller that has the row's column names in
// order already (a decoder reading osquery's lines, whose columns are in
// name order): names must be exactly the keys of row, ascending.
func EventIDSorted(hostID, query string, epoch, counter int64, action string, index int, names []string, row map[string]string) string {
	// The hashed bytes are, for each part, its length (8 bytes little
	// endian) then its bytes: host, query, epoch, counter, action, index
	// (decimal), then each column name and value in name order. They are
	// built in one buffer (on the stack for common rows) and hashed at once.
	var stack [1024]byte
	b := stack[:0]
	put := func(b []byte, s string) []byte {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		return append(b, s...)
	}
	putInt := func(b []byte, v int64) []byte {
		var d [20]byte
		n := strconv.AppendInt(d[:0], v, 10)
		b = binary.LittleEndian.AppendUint64(b, uint64(len(n)))
		return append(b, n...)
	}
	b = put(b, hostID)
	b = put(b, query)
	b = putInt(b, epoch)
	b = putInt(b, counter)
	b = put(b, action)
	b = putInt(b, int64(index))
	for _, k := range names {
		b = put(b, k)
		b = put(b, row[k])
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// OsqueryTableOf returns the single table a scheduled query reads from
// ("SELECT ... FROM process_events WHERE ..." -> "process_events"), or ""
// when the query reads from several tables or none can be found. Ingest
// uses it to pick the normalisation of a query's rows.
func OsqueryTableOf(sql string) string {
	fields := strings.Fields(strings.ToLower(sql))
	table := ""
	for i := 0; i+1 < len(fields); i++ {
		switch fields[i] {
		case "from", "join":
			name := strings.Trim(fields[i+1], "`\"[];,()")
			if name == "" || name == "select" {
				continue
			}
			if table != "" && table != name {
				return ""
			}
			table = name
		}
	}
	return table
}

// helpers for Source.Map implementations

func str(row map[string]string, k string) any {
	v, ok := row[k]
	if !ok {
		return nil
	}
	return v
}

func num(row map[string]string, k string) any {
	v, ok := row[k]
	if !ok || v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil
	}
	return n
}

func unixTime(row map[string]string, k string) time.Time {
	v, ok := row[k]
	if !ok {
		return time.Time{}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

func base(p string) any {
	if p == "" {
		return nil
	}
	return path.Base(p)
}
