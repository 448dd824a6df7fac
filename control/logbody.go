package control

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

// readLog is readNode for /log bodies, which are most of the bytes the
// control plane reads: decodeLogRequest instead of encoding/json.
func (s *Server) readLog(w http.ResponseWriter, r *http.Request, req *osquery.LogRequest) (vigil.Host, bool) {
	body, err := readBody(r, s.opts.MaxBodyBytes)
	if err == nil {
		err = decodeLogRequest(body, req)
	}
	if err != nil {
		s.fail(w, r, err)
		return vigil.Host{}, false
	}
	return s.authenticate(w, r, req.NodeKey)
}

// logBodyOpts: repeated names inside a line are the line decoder's
// business (encoding/json's RawMessage keeps them too), and tracking them
// costs a map per object.
var logBodyOpts = []jsontext.Options{jsontext.AllowDuplicateNames(true)}

// decodeLogRequest decodes a /log body as decodeJSON would, with one pass
// of jsontext over the bytes instead of encoding/json's two (validation,
// then decoding), and with the lines sliced from body rather than copied:
// body must not change while req is in use. It reads the shape every
// agent sends: an object whose node_key and log_type are strings or null
// and whose data is an array or null, in valid UTF-8, with the keys
// spelt exactly. Anything else, including every error, goes to
// decodeJSON, so results and error messages are encoding/json's.
func decodeLogRequest(body []byte, req *osquery.LogRequest) error {
	if fastLogRequest(body, req) {
		return nil
	}
	*req = osquery.LogRequest{}
	return decodeJSON(body, req)
}

func fastLogRequest(body []byte, req *osquery.LogRequest) bool {
	dec := jsontext.NewDecoder(bytes.NewBuffer(body), logBodyOpts...)
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return false
		}
		switch key := name.String(); key {
		case "node_key":
			if !readString(dec, &req.NodeKey) {
				return false
			}
		case "log_type":
			if !readString(dec, &req.LogType) {
				return false
			}
		case "data":
			if !readLines(dec, body, &req.Data) {
				return false
			}
		case "vigil_wait_ms":
			if !readInt(dec, &req.VigilWait) {
				return false
			}
		default:
			// encoding/json matches names without regard to case: a
			// near-spelling of a field goes to it there, so to decodeJSON.
			if strings.EqualFold(key, "node_key") || strings.EqualFold(key, "log_type") || strings.EqualFold(key, "data") || strings.EqualFold(key, "vigil_wait_ms") {
				return false
			}
			if err := dec.SkipValue(); err != nil {
				return false
			}
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return false
	}
	_, err := dec.ReadToken()
	return err == io.EOF // nothing after the object
}

// readString reads a string, or null, which leaves *dst as it is (as
// encoding/json does).
func readString(dec *jsontext.Decoder, dst *string) bool {
	tok, err := dec.ReadToken()
	if err != nil {
		return false
	}
	switch tok.Kind() {
	case '"':
		*dst = tok.String()
	case 'n':
	default:
		return false
	}
	return true
}

// readInt reads an integer that fits an int, or null, which leaves *dst
// as it is; anything else (a fraction, an exponent) goes to decodeJSON.
func readInt(dec *jsontext.Decoder, dst *int) bool {
	v, err := dec.ReadValue()
	if err != nil {
		return false
	}
	switch v.Kind() {
	case '0':
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return false
		}
		*dst = n
	case 'n':
	default:
		return false
	}
	return true
}

// readLines reads the data array, each element sliced from body.
func readLines(dec *jsontext.Decoder, body []byte, dst *[]json.RawMessage) bool {
	switch dec.PeekKind() {
	case 'n':
		*dst = nil
		_, err := dec.ReadToken()
		return err == nil
	case '[':
	default:
		return false
	}
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	lines := (*dst)[:0]
	if lines == nil {
		lines = []json.RawMessage{}
	}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return false
		}
		end := int(dec.InputOffset())
		start := end - len(v)
		if start < 0 || end > len(body) || !bytes.Equal(body[start:end], v) {
			return false // not where it was expected: never guess
		}
		lines = append(lines, json.RawMessage(body[start:end:end]))
	}
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	*dst = lines
	return true
}
