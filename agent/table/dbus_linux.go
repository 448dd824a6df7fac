package table

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// A minimal D-Bus client, enough for systemd_units to call ListUnits and
// Properties.Get on the system bus: EXTERNAL authentication, little-endian
// marshalling of the basic and container types, method calls with string
// arguments. It exists so the agent needs neither cgo nor a D-Bus module.

const (
	dbusMethodCall   = 1
	dbusMethodReturn = 2
	dbusError        = 3

	dbusFieldPath        = 1
	dbusFieldInterface   = 2
	dbusFieldMember      = 3
	dbusFieldErrorName   = 4
	dbusFieldReplySerial = 5
	dbusFieldDestination = 6
	dbusFieldSignature   = 8

	// dbusMaxMessage is the specification's limit on a message (128 MiB).
	dbusMaxMessage = 128 << 20
)

type dbusConn struct {
	c      net.Conn
	r      *bufio.Reader
	serial uint32
}

// dialDBus connects to the bus socket at path and authenticates as this
// process's uid.
func dialDBus(path string, timeout time.Duration) (*dbusConn, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connecting to D-Bus at %s: %w", path, err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	d := &dbusConn{c: c, r: bufio.NewReader(c)}
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	if _, err := io.WriteString(c, "\x00AUTH EXTERNAL "+uid+"\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("D-Bus auth: %w", err)
	}
	line, err := d.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK ") {
		c.Close()
		return nil, fmt.Errorf("D-Bus auth refused: %q %v", strings.TrimSpace(line), err)
	}
	if _, err := io.WriteString(c, "BEGIN\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("D-Bus auth: %w", err)
	}
	if _, err := d.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"); err != nil {
		c.Close()
		return nil, err
	}
	return d, nil
}

func (d *dbusConn) Close() error { return d.c.Close() }

// call invokes a method whose arguments are all strings and returns the
// decoded reply body.
func (d *dbusConn) call(dest, path, iface, member string, args ...string) ([]any, error) {
	d.serial++
	sig := strings.Repeat("s", len(args))
	var body dbusEncoder
	for _, a := range args {
		body.str(a)
	}
	fields := []dbusField{
		{dbusFieldPath, "o", path}, {dbusFieldInterface, "s", iface}, {dbusFieldMember, "s", member},
		{dbusFieldDestination, "s", dest},
	}
	if sig != "" {
		fields = append(fields, dbusField{dbusFieldSignature, "g", sig})
	}
	msg := encodeDBusMessage(dbusMethodCall, d.serial, fields, body.b)
	if _, err := d.c.Write(msg); err != nil {
		return nil, fmt.Errorf("D-Bus %s.%s: %w", iface, member, err)
	}
	for {
		m, err := readDBusMessage(d.r)
		if err != nil {
			return nil, fmt.Errorf("D-Bus %s.%s: %w", iface, member, err)
		}
		if rs, _ := m.fields[dbusFieldReplySerial].(uint32); rs != d.serial {
			continue // a signal or someone else's reply
		}
		if m.typ == dbusError {
			name, _ := m.fields[dbusFieldErrorName].(string)
			detail := ""
			if len(m.body) > 0 {
				detail, _ = m.body[0].(string)
			}
			return nil, fmt.Errorf("D-Bus %s.%s: %s: %s", iface, member, name, detail)
		}
		return m.body, nil
	}
}

type dbusField struct {
	code byte
	sig  string
	val  any
}

type dbusMessage struct {
	typ    byte
	serial uint32
	fields map[byte]any
	body   []any
}

// encodeDBusMessage builds a little-endian message.
func encodeDBusMessage(typ byte, serial uint32, fields []dbusField, body []byte) []byte {
	var e dbusEncoder
	e.b = append(e.b, 'l', typ, 0, 1)
	e.u32(uint32(len(body)))
	e.u32(serial)
	var arr dbusEncoder
	arr.b = e.b
	lenAt := arr.beginArray(8)
	start := len(arr.b)
	for _, f := range fields {
		arr.align(8)
		arr.b = append(arr.b, f.code)
		arr.sig(f.sig)
		arr.value(f.sig, f.val)
	}
	arr.endArray(lenAt, start)
	arr.align(8)
	return append(arr.b, body...)
}

// readDBusMessage reads and decodes one message.
func readDBusMessage(r io.Reader) (*dbusMessage, error) {
	fixed := make([]byte, 16)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return nil, err
	}
	if fixed[0] != 'l' && fixed[0] != 'B' {
		return nil, fmt.Errorf("bad endianness byte %q", fixed[0])
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if fixed[0] == 'B' {
		bo = binary.BigEndian
	}
	bodyLen, fieldsLen := bo.Uint32(fixed[4:]), bo.Uint32(fixed[12:])
	pad := (8 - (16+fieldsLen)%8) % 8
	total := uint64(fieldsLen) + uint64(pad) + uint64(bodyLen)
	if total > dbusMaxMessage {
		return nil, fmt.Errorf("message of %d bytes exceeds the D-Bus limit", total)
	}
	// Grow with the data that actually arrives rather than trusting the
	// announced size with one allocation.
	var rest bytes.Buffer
	if _, err := io.CopyN(&rest, r, int64(total)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	buf := append(fixed, rest.Bytes()...)
	d := &dbusDecoder{b: buf, bo: bo, pos: 12}
	fv, err := d.value("a(yv)", 0)
	if err != nil {
		return nil, fmt.Errorf("decoding header: %w", err)
	}
	m := &dbusMessage{typ: fixed[1], serial: bo.Uint32(fixed[8:]), fields: map[byte]any{}}
	for _, f := range fv.([]any) {
		st := f.([]any)
		m.fields[st[0].(byte)] = st[1]
	}
	d.align(8)
	sig, _ := m.fields[dbusFieldSignature].(string)
	for _, s := range splitDBusSig(sig) {
		v, err := d.value(s, 0)
		if err != nil {
			return nil, fmt.Errorf("decoding body (%s): %w", sig, err)
		}
		m.body = append(m.body, v)
	}
	return m, nil
}

// splitDBusSig splits a signature into its complete types.
func splitDBusSig(sig string) []string {
	var out []string
	for len(sig) > 0 {
		n := dbusTypeLen(sig)
		if n <= 0 {
			return out
		}
		out = append(out, sig[:n])
		sig = sig[n:]
	}
	return out
}

// dbusTypeLen is the length of the first complete type of sig, or -1.
func dbusTypeLen(sig string) int {
	if sig == "" {
		return -1
	}
	switch sig[0] {
	case 'a':
		n := dbusTypeLen(sig[1:])
		if n < 0 {
			return -1
		}
		return 1 + n
	case '(', '{':
		closer := byte(')')
		if sig[0] == '{' {
			closer = '}'
		}
		i := 1
		for i < len(sig) && sig[i] != closer {
			n := dbusTypeLen(sig[i:])
			if n < 0 {
				return -1
			}
			i += n
		}
		if i >= len(sig) {
			return -1
		}
		return i + 1
	case 'y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g', 'v', 'h':
		return 1
	}
	return -1
}

func dbusAlignment(c byte) int {
	switch c {
	case 'y', 'g', 'v':
		return 1
	case 'n', 'q':
		return 2
	case 'x', 't', 'd', '(', '{':
		return 8
	}
	return 4
}

type dbusDecoder struct {
	b   []byte
	bo  binary.ByteOrder
	pos int
}

var errDBusShort = errors.New("message too short")

func (d *dbusDecoder) align(n int) {
	d.pos = (d.pos + n - 1) / n * n
}

func (d *dbusDecoder) take(n int) ([]byte, error) {
	if n < 0 || d.pos+n > len(d.b) {
		return nil, errDBusShort
	}
	v := d.b[d.pos : d.pos+n]
	d.pos += n
	return v, nil
}

// value decodes one complete type; depth bounds nesting as the
// specification does (64).
func (d *dbusDecoder) value(sig string, depth int) (any, error) {
	if depth > 64 {
		return nil, errors.New("nesting too deep")
	}
	if sig == "" {
		return nil, errors.New("empty signature")
	}
	d.align(dbusAlignment(sig[0]))
	switch sig[0] {
	case 'y':
		b, err := d.take(1)
		if err != nil {
			return nil, err
		}
		return b[0], nil
	case 'n', 'q':
		b, err := d.take(2)
		if err != nil {
			return nil, err
		}
		return d.bo.Uint16(b), nil
	case 'b', 'i', 'u', 'h':
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		return d.bo.Uint32(b), nil
	case 'x', 't', 'd':
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return d.bo.Uint64(b), nil
	case 's', 'o':
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		s, err := d.take(int(d.bo.Uint32(b)) + 1)
		if err != nil {
			return nil, err
		}
		return string(s[:len(s)-1]), nil
	case 'g':
		b, err := d.take(1)
		if err != nil {
			return nil, err
		}
		s, err := d.take(int(b[0]) + 1)
		if err != nil {
			return nil, err
		}
		return string(s[:len(s)-1]), nil
	case 'v':
		s, err := d.value("g", depth+1)
		if err != nil {
			return nil, err
		}
		inner := s.(string)
		if dbusTypeLen(inner) != len(inner) {
			return nil, fmt.Errorf("variant signature %q is not one type", inner)
		}
		return d.value(inner, depth+1)
	case 'a':
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		n := int(d.bo.Uint32(b))
		if n > len(d.b) {
			return nil, errDBusShort
		}
		elem := sig[1:]
		d.align(dbusAlignment(elem[0]))
		end := d.pos + n
		if end > len(d.b) {
			return nil, errDBusShort
		}
		var out []any
		for d.pos < end {
			before := d.pos
			v, err := d.value(elem, depth+1)
			if err != nil {
				return nil, err
			}
			if d.pos == before {
				return nil, errors.New("array element of no size")
			}
			out = append(out, v)
		}
		return out, nil
	case '(', '{':
		var out []any
		for _, s := range splitDBusSig(sig[1 : len(sig)-1]) {
			v, err := d.value(s, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported type %q", sig[0])
}

// dbusEncoder marshals little-endian D-Bus values.
type dbusEncoder struct{ b []byte }

func (e *dbusEncoder) align(n int) {
	for len(e.b)%n != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *dbusEncoder) u32(v uint32) {
	e.align(4)
	e.b = binary.LittleEndian.AppendUint32(e.b, v)
}

func (e *dbusEncoder) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(append(e.b, s...), 0)
}

func (e *dbusEncoder) sig(s string) {
	e.b = append(append(append(e.b, byte(len(s))), s...), 0)
}

// beginArray writes a length placeholder and aligns for the elements.
func (e *dbusEncoder) beginArray(elemAlign int) int {
	e.u32(0)
	at := len(e.b) - 4
	e.align(elemAlign)
	return at
}

func (e *dbusEncoder) endArray(lenAt, start int) {
	binary.LittleEndian.PutUint32(e.b[lenAt:], uint32(len(e.b)-start))
}

// value marshals v (string, uint32, byte, uint64, []any, or for 'v' a
// dbusVariant) as sig.
func (e *dbusEncoder) value(sig string, v any) {
	switch sig[0] {
	case 'y':
		e.b = append(e.b, v.(byte))
	case 'u', 'i', 'b':
		e.u32(v.(uint32))
	case 't', 'x':
		e.align(8)
		e.b = binary.LittleEndian.AppendUint64(e.b, v.(uint64))
	case 's', 'o':
		e.str(v.(string))
	case 'g':
		e.sig(v.(string))
	case 'v':
		vv := v.(dbusVariant)
		e.sig(vv.sig)
		e.value(vv.sig, vv.val)
	case 'a':
		elem := sig[1:]
		at := e.beginArray(dbusAlignment(elem[0]))
		start := len(e.b)
		for _, x := range v.([]any) {
			e.value(elem, x)
		}
		e.endArray(at, start)
	case '(':
		e.align(8)
		for i, s := range splitDBusSig(sig[1 : len(sig)-1]) {
			e.value(s, v.([]any)[i])
		}
	}
}

type dbusVariant struct {
	sig string
	val any
}
