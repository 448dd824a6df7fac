package control

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// requestError is a problem with a request that the client must fix; it
// becomes a 4xx with {"error": msg}.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// readBody reads a request body of at most limit bytes, transparently
// decompressing Content-Encoding: gzip (osquery's logger_tls_compress); the
// limit applies to the decompressed size too, so a small bomb cannot
// expand into memory.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, readError(err, limit, "reading gzip body")
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, &requestError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("unsupported Content-Encoding %q (use gzip or none)", enc)}
	}
	body, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, readError(err, limit, "reading body")
	}
	if int64(len(body)) > limit {
		return nil, badRequest("body exceeds %d bytes (decompressed)", limit)
	}
	return body, nil
}

func readError(err error, limit int64, doing string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return badRequest("body exceeds %d bytes", limit)
	}
	return badRequest("%s: %v", doing, err)
}

// decodeJSON decodes one JSON object into v, with errors that say what is
// wrong and where (the byte offset in the body).
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("empty body: expected a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return badRequest("invalid JSON at offset %d: %s", se.Offset, se.Error())
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "(top level)"
			}
			return badRequest("invalid JSON at offset %d: field %s: got %s, want %s", te.Offset, field, te.Value, te.Type)
		default:
			return badRequest("invalid JSON: %v", err)
		}
	}
	return nil
}

// readJSON is readBody then decodeJSON.
func readJSON(r *http.Request, limit int64, v any) error {
	body, err := readBody(r, limit)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}
