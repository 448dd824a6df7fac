package osquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// The decoder of distributed/write bodies (see distributed.go for why it
// exists).

// UnmarshalJSON decodes a write as encoding/json decodes its fields (an
// unknown field is ignored, a field name matches case-insensitively when
// no name matches exactly, null leaves a field as it is or clears a map)
// and fills Columns from each query's first row. A value of the wrong
// type is a *json.UnmarshalTypeError whose Offset and Field say where:
// a row value's Field is like queries["id"][0]["column"].
//
// It trusts encoding/json to have checked that b is well-formed JSON, as
// json.Unmarshal and json.Decoder do before calling it; called directly
// with malformed input it returns an error or, for malformed JSON inside
// an ignored field, may accept it, but never panics.
func (w *DistributedWriteRequest) UnmarshalJSON(b []byte) error {
	d := writeDecoder{b: b}
	return d.write(w)
}

// writeDecoder reads a DistributedWriteRequest from b; i is the offset of
// the next byte to read.
type writeDecoder struct {
	b []byte
	i int
	// s is b as a string, made once the rows are reached: plain keys and
	// values are substrings of it.
	s string
}

var (
	typeWrite   = reflect.TypeFor[DistributedWriteRequest]()
	typeQueries = reflect.TypeFor[map[string][]map[string]string]()
	typeRows    = reflect.TypeFor[[]map[string]string]()
	typeRow     = reflect.TypeFor[map[string]string]()
	typeString  = reflect.TypeFor[string]()
)

// writeFields are the JSON names of DistributedWriteRequest's fields.
var writeFields = [...]string{"node_key", "queries", "statuses", "messages", "vigil_wait_ms"}

func (d *writeDecoder) write(w *DistributedWriteRequest) error {
	d.ws()
	switch c := d.peek(); c {
	case '{':
		d.i++
	case 'n':
		if err := d.null(); err != nil {
			return err
		}
		return d.end()
	case 0:
		return d.syntax("unexpected end of JSON input")
	default:
		if err := d.skip(); err != nil {
			return err
		}
		return d.typeError(c, typeWrite, "")
	}
	if d.closed('}') {
		return d.end()
	}
	for {
		d.ws()
		key, err := d.key()
		if err != nil {
			return err
		}
		if err := d.colon(); err != nil {
			return err
		}
		switch writeField(key) {
		case "queries":
			err = d.queries(w)
		case "node_key":
			if !d.plainString(&w.NodeKey) {
				err = d.std(&w.NodeKey, "node_key")
			}
		case "statuses":
			if !d.plainStatuses(w) {
				err = d.std(&w.Statuses, "statuses")
			}
		case "messages":
			err = d.std(&w.Messages, "messages")
		case "vigil_wait_ms":
			if n, ok := d.plainInt(); ok {
				w.VigilWait = int(n)
			} else {
				err = d.std(&w.VigilWait, "vigil_wait_ms")
			}
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
		more, err := d.more('}', "a field of the object")
		if err != nil {
			return err
		}
		if !more {
			return d.end()
		}
	}
}

// writeField returns the field a JSON key names: the exact name, else the
// first that matches case-insensitively (as encoding/json), else key.
func writeField(key string) string {
	for _, f := range writeFields {
		if key == f {
			return f
		}
	}
	for _, f := range writeFields {
		if strings.EqualFold(key, f) {
			return f
		}
	}
	return key
}

// std decodes the next value into v with encoding/json (the small fields:
// their exact behaviour, and their errors with offsets in b).
func (d *writeDecoder) std(v any, field string) error {
	start := d.i
	if err := d.skip(); err != nil {
		return err
	}
	err := json.Unmarshal(d.b[start:d.i], v)
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		te.Offset += int64(start)
		te.Struct = typeWrite.Name()
		if te.Field == "" {
			te.Field = field
		} else {
			te.Field = field + "." + te.Field
		}
	case errors.As(err, &se):
		se.Offset += int64(start)
	}
	return err
}

// The fast paths below read the common forms of the small fields without
// a json.Unmarshal each (most of the cost of a one-row answer); anything
// else they leave, unread, to std.

// plainString reads a string that needs no decoding into *s.
func (d *writeDecoder) plainString(s *string) bool {
	if d.peek() != '"' {
		return false
	}
	i := d.i
	start, end, plain, err := d.rawString()
	if err != nil || !plain {
		d.i = i
		return false
	}
	*s = string(d.b[start:end])
	return true
}

// plainInt reads an integer of at most 18 digits, which cannot overflow.
func (d *writeDecoder) plainInt() (int64, bool) {
	j, neg := d.i, false
	if j < len(d.b) && d.b[j] == '-' {
		neg = true
		j++
	}
	var n int64
	k := j
	for ; k < len(d.b) && d.b[k] >= '0' && d.b[k] <= '9'; k++ {
		n = n*10 + int64(d.b[k]-'0')
	}
	if k == j || k-j > 18 || (k-j > 1 && d.b[j] == '0') || (k < len(d.b) && literalByte(d.b[k])) {
		return 0, false
	}
	d.i = k
	if neg {
		n = -n
	}
	return n, true
}

// plainStatuses reads statuses whose ids are plain strings and whose
// codes are integers or strings of digits (osquery sends either), adding
// them to w.Statuses as encoding/json would.
func (d *writeDecoder) plainStatuses(w *DistributedWriteRequest) bool {
	if d.peek() != '{' {
		return false
	}
	start := d.i
	fail := func() bool { d.i = start; return false }
	var ids []string
	var codes []Int
	d.i++
	if !d.closed('}') {
		for {
			d.ws()
			var id string
			if !d.plainString(&id) || d.colon() != nil {
				return fail()
			}
			var code int64
			if d.peek() == '"' {
				cs, ce, plain, err := d.rawString()
				if err != nil || !plain {
					return fail()
				}
				if ce > cs { // "" is 0
					d.i = cs
					n, ok := d.plainInt()
					if !ok || d.i != ce {
						return fail()
					}
					code = n
				}
				d.i = ce + 1
			} else {
				n, ok := d.plainInt()
				if !ok {
					return fail()
				}
				code = n
			}
			ids, codes = append(ids, id), append(codes, Int(code))
			more, err := d.more('}', "a status")
			if err != nil {
				return fail()
			}
			if !more {
				break
			}
		}
	}
	if w.Statuses == nil {
		w.Statuses = make(map[string]Int, len(ids))
	}
	for i, id := range ids {
		w.Statuses[id] = codes[i]
	}
	return true
}

// queries reads the queries object: query id -> rows.
func (d *writeDecoder) queries(w *DistributedWriteRequest) error {
	switch c := d.peek(); c {
	case '{':
		d.i++
	case 'n':
		w.Queries, w.Columns = nil, nil
		return d.null()
	default:
		if err := d.skip(); err != nil {
			return err
		}
		return d.typeError(c, typeQueries, "queries")
	}
	if w.Queries == nil {
		w.Queries = map[string][]map[string]string{}
	}
	if d.closed('}') {
		return nil
	}
	for {
		d.ws()
		id, err := d.key()
		if err != nil {
			return err
		}
		if err := d.colon(); err != nil {
			return err
		}
		rows, cols, err := d.rows(id)
		if err != nil {
			return err
		}
		w.Queries[id] = rows
		switch {
		case len(cols) > 0:
			if w.Columns == nil {
				w.Columns = map[string][]string{}
			}
			w.Columns[id] = cols
		case w.Columns != nil:
			delete(w.Columns, id) // a repeated id: its last rows count
		}
		if more, err := d.more('}', "a query's rows"); err != nil || !more {
			return err
		}
	}
}

// rows reads one query's rows and returns the column order of its first
// row that has columns.
func (d *writeDecoder) rows(id string) ([]map[string]string, []string, error) {
	switch c := d.peek(); c {
	case '[':
		d.i++
	case 'n':
		return nil, nil, d.null()
	default:
		if err := d.skip(); err != nil {
			return nil, nil, err
		}
		return nil, nil, d.typeError(c, typeRows, fmt.Sprintf("queries[%q]", id))
	}
	rows := []map[string]string{}
	var cols []string
	if d.closed(']') {
		return rows, nil, nil
	}
	if d.s == "" {
		d.s = string(d.b)
	}
	for n := 0; ; n++ {
		d.ws()
		switch c := d.peek(); c {
		case '{':
			row, err := d.row(id, n, &cols)
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, row)
		case 'n':
			if err := d.null(); err != nil {
				return nil, nil, err
			}
			rows = append(rows, nil)
		default:
			if err := d.skip(); err != nil {
				return nil, nil, err
			}
			return nil, nil, d.typeError(c, typeRow, fmt.Sprintf("queries[%q][%d]", id, n))
		}
		more, err := d.more(']', "a row")
		if err != nil {
			return nil, nil, err
		}
		if !more {
			return rows, cols, nil
		}
	}
}

// row reads one row object (column -> string or null, null read as "").
// When *cols is empty the row's keys become the column order; otherwise
// a key equal to the column at its place reuses that string.
func (d *writeDecoder) row(id string, n int, cols *[]string) (map[string]string, error) {
	d.i++ // {
	learn := len(*cols) == 0
	m := make(map[string]string, len(*cols))
	if d.closed('}') {
		return m, nil
	}
	for k := 0; ; k++ {
		d.ws()
		if d.peek() != '"' {
			return nil, d.syntax("want a column name")
		}
		start, end, plain, err := d.rawString()
		if err != nil {
			return nil, err
		}
		var key string
		switch {
		case plain && !learn && k < len(*cols) && string(d.b[start:end]) == (*cols)[k]:
			key = (*cols)[k]
		case plain:
			key = d.s[start:end]
		default:
			if key, err = d.unquote(start, end); err != nil {
				return nil, err
			}
		}
		if err := d.colon(); err != nil {
			return nil, err
		}
		var v string
		switch c := d.peek(); c {
		case '"':
			if v, err = d.str(); err != nil {
				return nil, err
			}
		case 'n':
			if err := d.null(); err != nil {
				return nil, err
			}
		default:
			if err := d.skip(); err != nil {
				return nil, err
			}
			return nil, d.typeError(c, typeString, fmt.Sprintf("queries[%q][%d][%q]", id, n, key))
		}
		if learn {
			if _, dup := m[key]; !dup {
				*cols = append(*cols, key)
			}
		}
		m[key] = v
		more, err := d.more('}', "a column's value")
		if err != nil {
			return nil, err
		}
		if !more {
			return m, nil
		}
	}
}

// closed reads the closing byte of an empty object or array, if that is
// what comes next.
func (d *writeDecoder) closed(closing byte) bool {
	d.ws()
	if d.peek() == closing {
		d.i++
		return true
	}
	return false
}

// more reads what follows a member or an element: ',' (more follow) or
// the closing byte (none do); anything else is a syntax error.
func (d *writeDecoder) more(closing byte, after string) (bool, error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.i++
		return true, nil
	case closing:
		d.i++
		return false, nil
	}
	return false, d.syntax(fmt.Sprintf("after %s: want ',' or '%c'", after, closing))
}

// key reads an object key (before the rows are reached).
func (d *writeDecoder) key() (string, error) {
	if d.peek() != '"' {
		return "", d.syntax("want a string key")
	}
	return d.str()
}

// str reads a JSON string: plain ones as a substring of s (or a copy of
// their bytes before s exists), others through encoding/json.
func (d *writeDecoder) str() (string, error) {
	start, end, plain, err := d.rawString()
	if err != nil {
		return "", err
	}
	if !plain {
		return d.unquote(start, end)
	}
	if d.s != "" {
		return d.s[start:end], nil
	}
	return string(d.b[start:end]), nil
}

// unquote decodes the string whose contents are b[start:end] with
// encoding/json: escapes, invalid UTF-8 (replaced, as encoding/json does).
func (d *writeDecoder) unquote(start, end int) (string, error) {
	var s string
	if err := json.Unmarshal(d.b[start-1:end+1], &s); err != nil {
		return "", d.syntaxAt(start-1, "invalid string: "+err.Error())
	}
	return s, nil
}
