package osquery

import (
	"encoding/json"
	"fmt"
	"reflect"
	"unicode/utf8"
)

// The byte-level reading under writeDecoder (distributed_decode.go).

// rawString reads the string at i and returns the bounds of its contents;
// plain means they need no decoding (no escape, no control character,
// valid UTF-8).
func (d *writeDecoder) rawString() (start, end int, plain bool, err error) {
	start = d.i + 1
	plain = true
	var high byte
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			if high >= 0x80 && plain {
				plain = utf8.Valid(d.b[start:j])
			}
			return start, j, plain, nil
		case c == '\\':
			plain = false
			j++
		case c < 0x20:
			plain = false
		default:
			high |= c
		}
	}
	return 0, 0, false, d.syntaxAt(d.i, "unterminated string")
}

// skip moves past the value at i. It checks little (encoding/json has
// checked it all): strings, nesting and where the value ends.
func (d *writeDecoder) skip() error {
	depth := 0
	for {
		if d.i >= len(d.b) {
			return d.syntax("unexpected end of JSON input")
		}
		switch c := d.b[d.i]; c {
		case '"':
			if _, _, _, err := d.rawString(); err != nil {
				return err
			}
		case '{', '[':
			depth++
			d.i++
			continue
		case '}', ']':
			if depth == 0 {
				return d.syntax(fmt.Sprintf("unexpected %q", c))
			}
			depth--
			d.i++
		default:
			if depth > 0 {
				d.i++
				continue
			}
			start := d.i
			for d.i < len(d.b) && literalByte(d.b[d.i]) {
				d.i++
			}
			if d.i == start {
				return d.syntax(fmt.Sprintf("unexpected %q", c))
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

func literalByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}

// null reads the literal null.
func (d *writeDecoder) null() error {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return nil
	}
	return d.syntax("want null")
}

// colon reads the ':' after a key and the space around it.
func (d *writeDecoder) colon() error {
	d.ws()
	if d.peek() != ':' {
		return d.syntax("after an object key: want ':'")
	}
	d.i++
	d.ws()
	return nil
}

// end checks that nothing but space follows the object.
func (d *writeDecoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return d.syntax("data after the object")
	}
	return nil
}

func (d *writeDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the byte at i, or 0 at the end.
func (d *writeDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *writeDecoder) syntax(msg string) error { return d.syntaxAt(d.i, msg) }

func (d *writeDecoder) syntaxAt(off int, msg string) error {
	return fmt.Errorf("osquery: distributed write: offset %d: %s", off, msg)
}

// typeError says that the value that started with c and ended at i is not
// of type t, as encoding/json would.
func (d *writeDecoder) typeError(c byte, t reflect.Type, field string) error {
	kind := "number"
	switch c {
	case '{':
		kind = "object"
	case '[':
		kind = "array"
	case '"':
		kind = "string"
	case 't', 'f':
		kind = "bool"
	case 'n':
		kind = "null"
	}
	return &json.UnmarshalTypeError{Value: kind, Type: t, Offset: int64(d.i), Struct: typeWrite.Name(), Field: field}
}
