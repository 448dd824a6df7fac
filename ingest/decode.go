package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigilhq/vigil/osquery"
)

// fastOpts make the fast decoder accept what encoding/json accepts from
// osquery: invalid UTF-8 in values (replaced), repeated keys, any case;
// and read osquery.Int without a nested encoding/json call.
var fastOpts = jsonv2.JoinOptions(
	jsontext.AllowInvalidUTF8(true),
	jsontext.AllowDuplicateNames(true),
	jsonv2.MatchCaseInsensitiveNames(true),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(unmarshalInt)),
)

// unmarshalInt reads an osquery.Int as osquery.Int.UnmarshalJSON does:
// 12, "12", "" and null.
func unmarshalInt(dec *jsontext.Decoder, n *osquery.Int) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	var s string
	switch tok.Kind() {
	case 'n':
		*n = 0
		return nil
	case '"':
		if s = tok.String(); s == "" {
			*n = 0
			return nil
		}
	case '0':
		s = tok.String()
	default:
		return fmt.Errorf("osquery: %s is not an integer", tok.Kind())
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("osquery: %q is not an integer", s)
	}
	*n = osquery.Int(v)
	return nil
}

// Rejection reasons, the keys of Stats.Rejected.
const (
	ReasonMalformed     = "malformed_json"   // not a JSON object, or broken JSON
	ReasonFieldType     = "bad_field_type"   // a field of the wrong JSON type
	ReasonMissingName   = "missing_name"     // result line without a query name
	ReasonUnknownAction = "unknown_action"   // not added, removed, snapshot or diffResults
	ReasonMissingCols   = "missing_columns"  // added/removed without columns
	ReasonMissingTime   = "missing_time"     // neither unixTime nor calendarTime
	ReasonUnknownType   = "unknown_log_type" // log_type neither result nor status
	ReasonTooLarge      = "line_too_large"   // a line over MaxLineBytes
	ReasonTooManyRows   = "too_many_rows"    // a line over MaxRowsPerLine
	ReasonBadStatus     = "bad_status_line"  // status line that is not an object
)

// lineError is a rejected line with its reason.
type lineError struct {
	reason string
	err    error
}

func (e *lineError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *lineError) Unwrap() error { return e.err }

func reject(reason string, format string, args ...any) error {
	return &lineError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the rejection reason of err.
func reasonOf(err error) string {
	var le *lineError
	if errors.As(err, &le) {
		return le.reason
	}
	return ReasonMalformed
}

// resultRows is one decoded result line: its rows grouped by action.
type resultRows struct {
	line osquery.ResultLine
	time time.Time // of the line: unixTime, else calendarTime
	sets []rowSet
}

type rowSet struct {
	action string
	rows   []map[string]string
	metas  []rowMeta // for each row, when the fast decoder read them
	first  rowMeta   // for the row of an event-format line
}

// meta is what the decoder learnt about row i, if anything.
func (s *rowSet) meta(i int) rowMeta {
	if i < len(s.metas) {
		return s.metas[i]
	}
	if i == 0 {
		return s.first
	}
	return rowMeta{}
}

// DecodeResultLine decodes and validates one result log line in any of
// osquery's formats: event (action added/removed with columns), snapshot
// (action snapshot with snapshot rows) and batch (diffResults). Column
// values may be strings or, when osquery logs numerics, JSON numbers,
// booleans or null; they are kept as the strings osquery would log.
func DecodeResultLine(raw []byte) (osquery.ResultLine, error) {
	r, err := decodeResult(raw)
	return r.line, err
}

func decodeResult(raw []byte) (resultRows, error) {
	d := lineDecoders.Get().(*lineDecoder)
	defer lineDecoders.Put(d)
	return d.decodeResult(raw)
}

func (d *lineDecoder) decodeResult(raw []byte) (resultRows, error) {
	var out resultRows
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return out, reject(ReasonMalformed, "not a JSON object")
	}
	// The hand-written decoder reads the common shape; the reflective
	// jsonv2 decoder handles the rest of what osquery writes; anything
	// either refuses is decoded again from scratch by encoding/json,
	// which classifies the error and accepts numerics.
	if err := d.decode(raw, &out.line); err == nil {
		out, err := validate(out)
		if err == nil {
			d.attachMeta(&out)
		}
		return out, err
	}
	out.line = osquery.ResultLine{}
	if err := jsonv2.Unmarshal(raw, &out.line, fastOpts); err != nil {
		out.line = osquery.ResultLine{}
		if err := json.Unmarshal(raw, &out.line); err != nil {
			if err := classifyV1(raw, err, &out.line); err != nil {
				return out, err
			}
		}
	}
	return validate(out)
}

// attachMeta hands what the fast decoder learnt about the rows of the
// line it read to their sets, as validate made them.
func (d *lineDecoder) attachMeta(r *resultRows) {
	switch l := &r.line; {
	case l.DiffResults != nil:
		r.sets[0].metas, r.sets[1].metas = d.addedMeta, d.removedMeta
	case l.Action == osquery.ActionSnapshot:
		r.sets[0].metas = d.snapMeta
	default:
		r.sets[0].first = d.colsMeta
	}
}

// classifyV1 turns an encoding/json error into a rejection, or decodes the
// line with loose column values when only their types were wrong.
func classifyV1(raw []byte, err error, line *osquery.ResultLine) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return reject(ReasonMalformed, "%w", err)
	}
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		// From osquery.Int: a number field that is not a number.
		return reject(ReasonFieldType, "%w", err)
	}
	// osquery with --logger_numerics logs numbers as numbers.
	l, lerr := decodeLoose(raw)
	if lerr != nil {
		return lerr
	}
	*line = l
	return nil
}

func validate(out resultRows) (resultRows, error) {
	l := &out.line
	if l.Name == "" {
		return out, reject(ReasonMissingName, "result line has no name")
	}
	switch {
	case l.DiffResults != nil:
		out.sets = []rowSet{
			{action: osquery.ActionAdded, rows: l.DiffResults.Added},
			{action: osquery.ActionRemoved, rows: l.DiffResults.Removed},
		}
	case l.Action == osquery.ActionSnapshot:
		out.sets = []rowSet{{action: osquery.ActionSnapshot, rows: l.Snapshot}}
	case l.Action == osquery.ActionAdded || l.Action == osquery.ActionRemoved:
		if len(l.Columns) == 0 {
			return out, reject(ReasonMissingCols, "query %q: %s line without columns", l.Name, l.Action)
		}
		out.sets = []rowSet{{action: l.Action, rows: []map[string]string{l.Columns}}}
	default:
		return out, reject(ReasonUnknownAction, "query %q: action %q is not added, removed or snapshot and there are no diffResults", l.Name, l.Action)
	}
	t, err := lineTime(int64(l.UnixTime), l.CalendarTime)
	if err != nil {
		return out, reject(ReasonMissingTime, "query %q: %w", l.Name, err)
	}
	out.time = t
	return out, nil
}

// lineTime is the line's time: unixTime, else calendarTime.
func lineTime(unix int64, calendar string) (time.Time, error) {
	if unix > 0 {
		return time.Unix(unix, 0).UTC(), nil
	}
	for _, layout := range []string{"Mon Jan _2 15:04:05 2006 MST", "Mon Jan _2 15:04:05 2006"} {
		if t, err := time.Parse(layout, calendar); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("no unixTime and calendarTime %q is not a time", calendar)
}

// looseLine is ResultLine with column values of any JSON type.
type looseLine struct {
	osquery.ResultLine
	Columns     map[string]looseValue   `json:"columns,omitempty"`
	Snapshot    []map[string]looseValue `json:"snapshot,omitempty"`
	DiffResults *struct {
		Added   []map[string]looseValue `json:"added"`
		Removed []map[string]looseValue `json:"removed"`
	} `json:"diffResults,omitempty"`
}

// looseValue is a column value logged as a string, number, boolean or null.
type looseValue string

func (v *looseValue) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("empty value")
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = looseValue(s)
	case b[0] == 'n': // null
		*v = ""
	case b[0] == 't' || b[0] == 'f':
		// osquery logs booleans as 1/0 in string mode.
		if string(b) == "true" {
			*v = "1"
		} else {
			*v = "0"
		}
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*v = looseValue(b) // the number exactly as written
	default:
		return fmt.Errorf("column value %.20s is not a string, number, boolean or null", b)
	}
	return nil
}

func decodeLoose(raw []byte) (osquery.ResultLine, error) {
	var l looseLine
	if err := json.Unmarshal(raw, &l); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return osquery.ResultLine{}, reject(ReasonMalformed, "%w", err)
		}
		return osquery.ResultLine{}, reject(ReasonFieldType, "%w", err)
	}
	line := l.ResultLine
	line.Columns = strMap(l.Columns)
	line.Snapshot = strMaps(l.Snapshot)
	line.DiffResults = nil
	if l.DiffResults != nil {
		line.DiffResults = &osquery.DiffResults{Added: strMaps(l.DiffResults.Added), Removed: strMaps(l.DiffResults.Removed)}
	}
	return line, nil
}

func strMap(m map[string]looseValue) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func strMaps(ms []map[string]looseValue) []map[string]string {
	if ms == nil {
		return nil
	}
	out := make([]map[string]string, len(ms))
	for i, m := range ms {
		out[i] = strMap(m)
		if out[i] == nil {
			out[i] = map[string]string{}
		}
	}
	return out
}

// decodeStatus decodes one status log line and returns it as the columns
// stored for it in the results table.
func decodeStatus(raw []byte) (osquery.StatusLine, time.Time, map[string]string, error) {
	var s osquery.StatusLine
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return s, time.Time{}, nil, reject(ReasonBadStatus, "not a JSON object")
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return s, time.Time{}, nil, reject(ReasonMalformed, "%w", err)
		}
		return s, time.Time{}, nil, reject(ReasonBadStatus, "%w", err)
	}
	t, err := lineTime(int64(s.UnixTime), s.CalendarTime)
	if err != nil {
		return s, time.Time{}, nil, reject(ReasonMissingTime, "status line: %w", err)
	}
	cols := map[string]string{
		"severity": strconv.FormatInt(int64(s.Severity), 10),
		"filename": s.Filename,
		"line":     strconv.FormatInt(int64(s.Line), 10),
		"message":  s.Message,
	}
	if s.Version != "" {
		cols["version"] = s.Version
	}
	if s.CalendarTime != "" {
		cols["calendarTime"] = s.CalendarTime
	}
	return s, t, cols, nil
}
