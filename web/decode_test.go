package web

import (
	"bytes"
	"errors"
	"net/http/httptest"
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
	})
}
