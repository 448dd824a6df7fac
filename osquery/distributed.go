package osquery

import (
	"encoding/json"
	"slices"
)

// Column order of distributed query results.
//
// A row is a map, which has no order, but the order of a SELECT's columns
// is what a person reading the result expects. osquery writes each row of
// distributed/write as a JSON object with its keys in column order, so
// DistributedWriteRequest reads its rows with a decoder of its own that
// keeps the first row's key order in Columns, and writes rows back in that
// order. The wire format is unchanged: Columns is not a JSON field.
//
// distributed/write is on the hot path of a live query to every host, so
// the decoder is also cheaper than encoding/json's: row keys after the
// first row are the first row's strings when they match (they do for
// osquery and Vigil's agent), and every plain key and value is a substring
// of one copy of the body instead of a string of its own. The rows keep
// that copy alive as long as any of them is referenced; it is at most the
// body, which the rows are nearly all of.

// plainWrite is DistributedWriteRequest without its methods: the standard
// encoding, for writes that carry no column order.
type plainWrite DistributedWriteRequest

// orderedWrite is the wire form of a write whose rows keep their order;
// fields as DistributedWriteRequest's.
type orderedWrite struct {
	NodeKey   string                 `json:"node_key"`
	Queries   map[string]OrderedRows `json:"queries"`
	Statuses  map[string]Int         `json:"statuses,omitempty"`
	Messages  map[string]string      `json:"messages,omitempty"`
	VigilWait int                    `json:"vigil_wait_ms,omitempty"`
}

// MarshalJSON writes the request as encoding/json would, except that the
// keys of each query's rows follow Columns (then any key Columns lacks,
// sorted). Without Columns the output is exactly encoding/json's.
func (w DistributedWriteRequest) MarshalJSON() ([]byte, error) {
	if len(w.Columns) == 0 {
		return json.Marshal(plainWrite(w))
	}
	o := orderedWrite{NodeKey: w.NodeKey, Statuses: w.Statuses, Messages: w.Messages, VigilWait: w.VigilWait}
	if w.Queries != nil {
		o.Queries = make(map[string]OrderedRows, len(w.Queries))
		for id, rows := range w.Queries {
			o.Queries[id] = OrderedRows{Rows: rows, Columns: w.Columns[id]}
		}
	}
	return json.Marshal(o)
}

// OrderedRows is a query's rows with their column order. It marshals as a
// JSON array of objects whose keys come in Columns' order, then any key
// Columns lacks, sorted; nil Rows marshal as null, a nil row as null.
type OrderedRows struct {
	Rows    []map[string]string
	Columns []string
}

// MarshalJSON implements json.Marshaler.
func (o OrderedRows) MarshalJSON() ([]byte, error) {
	return AppendRows(nil, o.Rows, o.Columns), nil
}

// AppendRows appends rows to b as OrderedRows marshals them. Strings are
// escaped as encoding/json escapes them, so rows whose columns are sorted
// come out byte for byte as json.Marshal writes them.
func AppendRows(b []byte, rows []map[string]string, columns []string) []byte {
	if rows == nil {
		return append(b, "null"...)
	}
	columns = uniqueColumns(columns)
	b = append(b, '[')
	var rest []string
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		if row == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '{')
		n := 0
		for _, c := range columns {
			v, ok := row[c]
			if !ok {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, c)
			b = append(b, ':')
			b = AppendString(b, v)
			n++
		}
		if n < len(row) {
			// Keys the column list lacks: after it, sorted, as
			// encoding/json orders a whole map.
			rest = rest[:0]
			for k := range row {
				if !slices.Contains(columns, k) {
					rest = append(rest, k)
				}
			}
			slices.Sort(rest)
			for _, k := range rest {
				if n > 0 {
					b = append(b, ',')
				}
				b = AppendString(b, k)
				b = append(b, ':')
				b = AppendString(b, row[k])
				n++
			}
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// uniqueColumns returns columns without repeats (SELECT a, a gives a
// column list with a twice but a row with one key a); it allocates only
// when there is a repeat.
func uniqueColumns(columns []string) []string {
	for i, c := range columns {
		if slices.Contains(columns[:i], c) {
			out := slices.Clone(columns[:i])
			for _, c := range columns[i+1:] {
				if !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
			return out
		}
	}
	return columns
}

// AppendString appends s as a JSON string, escaped exactly as
// encoding/json escapes it. Printable ASCII other than what encoding/json
// escapes is copied; anything else is left to encoding/json (escapes,
// invalid UTF-8, U+2028).
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendStrings appends ss as a JSON array of strings, escaped as
// AppendString does.
func AppendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, s)
	}
	return append(b, ']')
}
