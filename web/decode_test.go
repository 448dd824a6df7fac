package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigilhq/vigil"
)

// FuzzDecode: every request body the people API reads either decodes or
// fails as a 400 (vigil.ErrInvalid) with a message; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"sql":"SELECT 1","hosts":["a"],"all":false}`))
	f.Add([]byte(`{"config":{"packs":{"p":{"queries":{"q":{"query":"SELECT 1","interval":"x"}}}}},"base_version":1}`))
	f.Add([]byte(`{"user":"carol","role":"viewer"} {}`))
	f.Add([]byte(`{"labels":["a",1]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&QueryRequest{}, &ConfigUpdate{}, &TokenRequest{}, &LabelsRequest{}, &AlertUpdate{}, &EnrollSecretRequest{}} {
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			if err := decode(r, v); err != nil && (!errors.Is(err, vigil.ErrInvalid) || err.Error() == "") {
				t.Fatalf("%T: %v is not a readable 400", v, err)
			}
		}
		// Actions without parameters: nothing or {} only.
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		err := noBody(r)
		if err != nil && (!errors.Is(err, vigil.ErrInvalid) || err.Error() == "") {
			t.Fatalf("noBody: %v is not a readable 400", err)
		}
		if err == nil && len(bytes.TrimSpace(body)) > 0 {
			var m map[string]any
			if json.Unmarshal(body, &m) != nil || len(m) != 0 {
				t.Fatalf("noBody accepted %q: want only nothing or an empty object", body)
			}
		}
	})
}

// TestDecodeRefusesTrailingData: one object, then nothing but whitespace.
func TestDecodeRefusesTrailingData(t *testing.T) {
	for _, body := range []string{`{"sql":"x"}}`, `{"sql":"x"}]`, `{"sql":"x"} {}`, `{"sql":"x"} x`} {
		var q QueryRequest
		err := decode(httptest.NewRequest("POST", "/", strings.NewReader(body)), &q)
		if !errors.Is(err, vigil.ErrInvalid) || !strings.Contains(err.Error(), "data after the object") {
			t.Errorf("decode(%q) = %v, want a 400 saying data follows the object", body, err)
		}
	}
	var q QueryRequest
	if err := decode(httptest.NewRequest("POST", "/", strings.NewReader("{\"sql\":\"x\"}\n\t ")), &q); err != nil || q.SQL != "x" {
		t.Errorf("trailing whitespace: %v %+v", err, q)
	}
	// Whitespace after the object past the limit: the limit is named.
	big := `{"sql":"x"}` + strings.Repeat(" ", maxRequestBytes)
	if err := decode(httptest.NewRequest("POST", "/", strings.NewReader(big)), &q); err == nil || !strings.Contains(err.Error(), "body exceeds") {
		t.Errorf("padding past the limit: %v", err)
	}
}
