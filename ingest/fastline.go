package ingest

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigilhq/vigil/osquery"
)

// lineDecoder reads the common shape of a result line without reflection:
// string columns, integer or string numbers, each known key once, exact
// key case. Anything else (numeric column values, repeated or mis-cased
// keys, invalid UTF-8, ...) makes it give up with errFallback, and the
// reflective decoders, which implement every rule of encoding/json, decode
// the line from scratch. So this is only ever a faster way to the same
// result. The JSON syntax itself is checked by jsontext either way.
//
// It allocates one string per line for all of its text (keys and values
// slice it) plus the maps; column names are interned across lines. A
// lineDecoder is not safe for concurrent use; each decoding goroutine has
// its own.
type lineDecoder struct {
	dec  jsontext.Decoder
	text []byte            // the line's unquoted strings, back to back
	refs []strRef          // where each string of the line lands in text
	keys map[string]string // interned column names
	tmp  []byte
	raw  []byte // the line

	lastCols  int      // columns of the last row
	lastNames []string // names of the last row in name order, shared

	// What row learnt about the rows of the line (columns, snapshot,
	// diffResults' added and removed).
	colsMeta               rowMeta
	snapMeta               []rowMeta
	addedMeta, removedMeta []rowMeta
}

// rowMeta is what the decoder learns about a row on the way, to spare
// the work of finding it again from the map. osquery writes columns in
// name order, so for its rows names is set, and encoded too unless a
// string needed escapes.
type rowMeta struct {
	names   []string // the row's names, ascending; nil if not in order
	encoded string   // the row as store.EncodeColumns encodes it, or ""
}

// strRef says which string field a range of text fills.
type strRef struct {
	dst    *string
	lo, hi int
}

// errFallback: the line is not of the common shape; decode it the slow way.
var errFallback = errors.New("ingest: line needs the general decoder")

const maxInternedKeys = 4096

// lineDecoders keep decoders, with their buffers and interned column
// names, across requests.
var lineDecoders = sync.Pool{New: func() any { return new(lineDecoder) }}

// lineOpts: invalid UTF-8 and repeated names are checked by this decoder
// itself (it falls back on both), so jsontext need not track them.
var lineOpts = []jsontext.Options{jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)}

// decode fills line from raw. On error, line is partly filled and must be
// discarded. Syntax errors come back as they are; errFallback means the
// line is valid JSON of an unusual shape.
func (d *lineDecoder) decode(raw []byte, line *osquery.ResultLine) error {
	if d.keys == nil {
		d.keys = map[string]string{}
	}
	d.text = d.text[:0]
	d.refs = d.refs[:0]
	d.raw = raw
	d.colsMeta, d.snapMeta, d.addedMeta, d.removedMeta = rowMeta{}, nil, nil, nil
	d.dec.Reset(bytes.NewBuffer(raw), lineOpts...)
	if err := d.line(line); err != nil {
		return err
	}
	if err := d.end(); err != nil {
		return err
	}
	// One string for every value of the line; the fields slice it.
	all := string(d.text)
	for _, r := range d.refs {
		*r.dst = all[r.lo:r.hi]
	}
	return nil
}

// end checks that nothing but whitespace follows the object.
func (d *lineDecoder) end() error {
	if _, err := d.dec.ReadToken(); err != io.EOF {
		return errFallback // anything after the object: encoding/json refuses it
	}
	return nil
}

// Keys of a result line, as bits of a set to catch repeats.
const (
	kName = 1 << iota
	kHostIdentifier
	kCalendarTime
	kUnixTime
	kEpoch
	kCounter
	kNumerics
	kDecorations
	kAction
	kColumns
	kSnapshot
	kDiffResults
)

var lineKeys = map[string]int{
	"name": kName, "hostIdentifier": kHostIdentifier, "calendarTime": kCalendarTime,
	"unixTime": kUnixTime, "epoch": kEpoch, "counter": kCounter, "numerics": kNumerics,
	"decorations": kDecorations, "action": kAction, "columns": kColumns,
	"snapshot": kSnapshot, "diffResults": kDiffResults,
}

func (d *lineDecoder) line(l *osquery.ResultLine) error {
	if err := d.open('{'); err != nil {
		return err
	}
	seen := 0
	for d.dec.PeekKind() != '}' {
		key, err := d.rawString()
		if err != nil {
			return err
		}
		k, ok := lineKeys[string(key)]
		if !ok {
			if d.knownFold(key) {
				return errFallback
			}
			if err := d.dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if seen&k != 0 {
			return errFallback
		}
		seen |= k
		switch k {
		case kName:
			err = d.str(&l.Name)
		case kHostIdentifier:
			err = d.str(&l.HostIdentifier)
		case kCalendarTime:
			err = d.str(&l.CalendarTime)
		case kAction:
			err = d.str(&l.Action)
		case kUnixTime:
			err = d.int(&l.UnixTime)
		case kEpoch:
			err = d.int(&l.Epoch)
		case kCounter:
			err = d.int(&l.Counter)
		case kNumerics:
			err = d.bool(&l.Numerics)
		case kDecorations:
			l.Decorations, _, err = d.row()
		case kColumns:
			l.Columns, d.colsMeta, err = d.row()
		case kSnapshot:
			l.Snapshot, d.snapMeta, err = d.rows()
		case kDiffResults:
			l.DiffResults, err = d.diff()
		}
		if err != nil {
			return err
		}
	}
	return d.close()
}

// knownFold reports whether key matches a known key only case-insensitively
// (encoding/json would use it; this decoder leaves that to it).
func (d *lineDecoder) knownFold(key []byte) bool {
	for k := range lineKeys {
		if strings.EqualFold(k, string(key)) {
			return true
		}
	}
	for _, k := range []string{"added", "removed"} {
		if strings.EqualFold(k, string(key)) {
			return true
		}
	}
	return false
}

func (d *lineDecoder) diff() (*osquery.DiffResults, error) {
	if d.dec.PeekKind() == 'n' {
		_, err := d.dec.ReadToken()
		return nil, err
	}
	if err := d.open('{'); err != nil {
		return nil, err
	}
	var out osquery.DiffResults
	seen := 0
	for d.dec.PeekKind() != '}' {
		key, err := d.rawString()
		if err != nil {
			return nil, err
		}
		var dst *[]map[string]string
		var meta *[]rowMeta
		var bit int
		switch string(key) {
		case "added":
			dst, meta, bit = &out.Added, &d.addedMeta, 1
		case "removed":
			dst, meta, bit = &out.Removed, &d.removedMeta, 2
		default:
			if d.knownFold(key) {
				return nil, errFallback
			}
			if err := d.dec.SkipValue(); err != nil {
				return nil, err
			}
			continue
		}
		if seen&bit != 0 {
			return nil, errFallback
		}
		seen |= bit
		if *dst, *meta, err = d.rows(); err != nil {
			return nil, err
		}
	}
	return &out, d.close()
}

// rows reads an array of rows, or null.
func (d *lineDecoder) rows() ([]map[string]string, []rowMeta, error) {
	if d.dec.PeekKind() == 'n' {
		_, err := d.dec.ReadToken()
		return nil, nil, err
	}
	if err := d.open('['); err != nil {
		return nil, nil, err
	}
	out := []map[string]string{}
	var metas []rowMeta
	for d.dec.PeekKind() != ']' {
		if d.dec.PeekKind() != '{' {
			return nil, nil, errFallback
		}
		r, meta, err := d.row()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, r)
		metas = append(metas, meta)
	}
	return out, metas, d.close()
}

// row reads an object of string values, or null.
func (d *lineDecoder) row() (map[string]string, rowMeta, error) {
	if d.dec.PeekKind() == 'n' {
		_, err := d.dec.ReadToken()
		return nil, rowMeta{}, err
	}
	if err := d.open('{'); err != nil {
		return nil, rowMeta{}, err
	}
	start := int(d.dec.InputOffset()) - 1 // the '{'
	// Rows of a query have the same columns: size the map like the last.
	m := make(map[string]string, max(d.lastCols, 1))
	type pending struct {
		key    string
		lo, hi int
	}
	var stack [32]pending
	vals := stack[:0]
	sorted, form := true, rowForm{canonical: true}
	for d.dec.PeekKind() != '}' {
		key, err := d.rawString()
		if err != nil {
			return nil, rowMeta{}, err
		}
		form.add(key)
		k, ok := d.keys[string(key)]
		if !ok {
			if k, err = d.unquote(key); err != nil {
				return nil, rowMeta{}, err
			}
			if len(d.keys) < maxInternedKeys {
				d.keys[k] = k
			}
		}
		if len(vals) > 0 && k <= vals[len(vals)-1].key {
			sorted = false
		}
		lo := len(d.text)
		v, err := d.rawString()
		if err != nil {
			return nil, rowMeta{}, err
		}
		form.add(v)
		if quoted(v) {
			if d.text, err = jsontext.AppendUnquote(d.text, v); err != nil {
				d.text = d.text[:lo]
				return nil, rowMeta{}, errFallback
			}
		} else {
			d.text = append(d.text, v...)
		}
		vals = append(vals, pending{k, lo, len(d.text)})
	}
	if err := d.close(); err != nil {
		return nil, rowMeta{}, err
	}
	end := int(d.dec.InputOffset())
	var meta rowMeta
	if n := len(vals); n > 0 {
		canonical := form.canonical && sorted && end-start == 2+form.rawLen+n+n-1 // braces, colons, commas
		// Values slice one string made for this row (the line's text may
		// still grow, so it cannot be the line's): the row's JSON itself
		// when that is the encoding and holds the values as they are.
		textStart := vals[0].lo
		var all string
		switch {
		case canonical && !form.escapes:
			all = string(d.raw[start:end])
			meta.encoded = all
			pos := 1
			for i, v := range vals {
				pos += len(v.key) + 4 // "key":"
				vals[i].lo, vals[i].hi = pos, pos+v.hi-v.lo
				pos = vals[i].hi + 2 // ",
			}
		case canonical:
			meta.encoded = string(d.raw[start:end])
			fallthrough
		default:
			all = string(d.text[textStart:])
			for i := range vals {
				vals[i].lo -= textStart
				vals[i].hi -= textStart
			}
		}
		for _, v := range vals {
			m[v.key] = all[v.lo:v.hi]
		}
		d.text = d.text[:textStart]
		if sorted {
			meta.names = d.shape(n, func(i int) string { return vals[i].key })
		}
	}
	d.lastCols = len(m)
	return m, meta, nil
}

// rowForm follows whether a row's JSON is what EncodeColumns writes:
// names in order (checked by row), escapes as it writes them, no spaces
// (checked by length at the end).
type rowForm struct {
	canonical, escapes bool
	rawLen             int // of the strings, quotes included
}

// add notes a key or value as rawString returned it.
func (f *rowForm) add(b []byte) {
	if quoted(b) {
		f.escapes = true
		f.canonical = f.canonical && canonicalEscapes(b)
		f.rawLen += len(b)
		return
	}
	f.rawLen += len(b) + 2
}

// quoted reports whether rawString returned a string still quoted (it had
// escapes).
func quoted(b []byte) bool { return len(b) > 0 && b[0] == '"' }

// canonicalEscapes reports whether the escapes of a quoted JSON string are
// those store.EncodeColumns writes: \" \\ \n \r \t, and \u00xx (lower-case
// hex) for other control characters.
func canonicalEscapes(q []byte) bool {
	for i := 1; i < len(q)-1; i++ {
		if q[i] != '\\' {
			continue
		}
		i++
		switch q[i] {
		case '"', '\\', 'n', 'r', 't':
		case 'u':
			if i+4 >= len(q) || q[i+1] != '0' || q[i+2] != '0' || (q[i+3] != '0' && q[i+3] != '1') || !isLowerHex(q[i+4]) {
				return false
			}
			if c := q[i+4]; q[i+3] == '0' && (c == '9' || c == 'a' || c == 'd') {
				return false // \t, \n, \r: written short
			}
			i += 4
		default:
			return false
		}
	}
	return true
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// shape returns the n names key gives, as a slice shared with the last
// row when its names were the same (rows of one query share them).
func (d *lineDecoder) shape(n int, key func(int) string) []string {
	same := len(d.lastNames) == n
	for i := 0; same && i < n; i++ {
		same = d.lastNames[i] == key(i)
	}
	if !same {
		d.lastNames = make([]string, n)
		for i := range n {
			d.lastNames[i] = key(i)
		}
	}
	return d.lastNames
}

func (d *lineDecoder) open(delim byte) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if byte(tok.Kind()) != delim {
		return errFallback
	}
	return nil
}

func (d *lineDecoder) close() error {
	_, err := d.dec.ReadToken()
	return err
}

// rawString reads a string value and returns it still quoted and escaped
// when it has escapes, else its bytes (valid only until the next read).
func (d *lineDecoder) rawString() ([]byte, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	if v.Kind() != '"' {
		return nil, errFallback
	}
	return plainOrQuoted(v)
}

// plainOrQuoted returns the content of a quoted JSON string when it needs
// no unquoting and is valid UTF-8, else the quoted string itself.
func plainOrQuoted(v []byte) ([]byte, error) {
	in := v[1 : len(v)-1]
	ascii := true
	for _, c := range in {
		if c == '\\' {
			return v, nil
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(in) {
		return nil, errFallback
	}
	return in, nil
}

// unquote turns what rawString returned into a Go string.
func (d *lineDecoder) unquote(b []byte) (string, error) {
	if len(b) == 0 || b[0] != '"' {
		return string(b), nil
	}
	var err error
	d.tmp, err = jsontext.AppendUnquote(d.tmp[:0], b)
	if err != nil {
		return "", errFallback // invalid UTF-8: the general decoder replaces it
	}
	return string(d.tmp), nil
}

// appendString reads a string value and appends its text to d.text.
func (d *lineDecoder) appendString() error {
	b, err := d.rawString()
	if err != nil {
		return err
	}
	if len(b) > 0 && b[0] == '"' {
		n := len(d.text)
		if d.text, err = jsontext.AppendUnquote(d.text, b); err != nil {
			d.text = d.text[:n]
			return errFallback
		}
		return nil
	}
	d.text = append(d.text, b...)
	return nil
}

// str reads a string field (null leaves it as it is, as encoding/json does).
func (d *lineDecoder) str(dst *string) error {
	if d.dec.PeekKind() == 'n' {
		_, err := d.dec.ReadToken()
		return err
	}
	lo := len(d.text)
	if err := d.appendString(); err != nil {
		return err
	}
	d.refs = append(d.refs, strRef{dst, lo, len(d.text)})
	return nil
}

// int reads an osquery.Int: 12, "12", "" or null.
func (d *lineDecoder) int(dst *osquery.Int) error {
	v, err := d.dec.ReadValue()
	if err != nil {
		return err
	}
	var s []byte
	switch v.Kind() {
	case 'n':
		*dst = 0
		return nil
	case '0':
		s = v
	case '"':
		s = v[1 : len(v)-1]
		if len(s) == 0 {
			*dst = 0
			return nil
		}
	default:
		return errFallback
	}
	n, err := parseInt(s)
	if err != nil {
		return errFallback
	}
	*dst = osquery.Int(n)
	return nil
}

func (d *lineDecoder) bool(dst *bool) error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 't':
		*dst = true
	case 'f':
		*dst = false
	case 'n':
	default:
		return errFallback
	}
	return nil
}

// parseInt parses a decimal int64 without allocating.
func parseInt(b []byte) (int64, error) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return strconv.ParseInt(string(b), 10, 64) // the error, or a long form
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, strconv.ErrRange
		}
		return -int64(n), nil
	}
	if n > 1<<63-1 {
		return 0, strconv.ErrRange
	}
	return int64(n), nil
}
