package control

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/osquery"
)

func TestDecodeErrorsSayWhere(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"node_key": "a",}`, "invalid JSON at offset 18: "},
		{`{"node_key": 1}`, "field node_key: got number, want string"},
		{`[1]`, "(top level)"},
		{`   `, "empty body"},
		{`{"node_key": "a"} {}`, "invalid JSON at offset"},
	} {
		var req osquery.NodeRequest
		err := decodeJSON([]byte(c.body), &req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("decodeJSON(%q) = %v, want it to mention %q", c.body, err, c.want)
		}
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", 11)))
	if _, err := readBody(r, 10); err == nil || err.Error() != "body exceeds 10 bytes" {
		t.Errorf("over limit: %v", err)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("a", 10)))
	if b, err := readBody(r, 10); err != nil || len(b) != 10 {
		t.Errorf("at limit: %d %v", len(b), err)
	}
}

// FuzzDecodeRequests feeds arbitrary bodies to the decoding of every
// request type: it must never panic, and every failure must be a 400 the
// client can read.
func FuzzDecodeRequests(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"node_key":"k","statuses":{"a":"1"},"queries":{"a":[{"x":1}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		targets := []any{&osquery.EnrollRequest{}, &osquery.NodeRequest{}, &osquery.LogRequest{},
			&osquery.DistributedWriteRequest{}}
		for _, v := range targets {
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			err := readJSON(r, 1<<16, v)
			if err == nil {
				continue
			}
			var re *requestError
			if !errors.As(err, &re) || re.status != http.StatusBadRequest || re.msg == "" {
				t.Fatalf("%T: error %v is not a readable 400", v, err)
			}
		}
	})
}
