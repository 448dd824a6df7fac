package control

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vigilhq/vigil/osquery"
)

// logBodies are /log bodies the fast decoder must read exactly as
// encoding/json does: the common shape and its edges.
var logBodies = []string{
	`{"node_key":"k","log_type":"result","data":[{"name":"q","columns":{"a":"1"}},{"name":"r"}]}`,
	"{ \"data\" : [ {\"a\" : [1, 2]} ,\n\t\"s\", 3, null, true ] , \"log_type\":\"status\", \"node_key\":\"k\" }",
	`{"node_key":"k","log_type":"result","data":[]}`,
	`{"node_key":"k","log_type":"result","data":null}`,
	`{"node_key":"k","log_type":"result","data":[{"name":"q"}],"vigil_wait_ms":3000}`, // Vigil's held log
	`{"node_key":"k","vigil_wait_ms":null,"data":[]}`,
	`{"node_key":"k","vigil_wait_ms":-5}`,
	`{"node_key":"k","VIGIL_WAIT_MS":7}`,
	`{"node_key":null,"log_type":"result"}`,
	`{"node_key":"a","node_key":"b","data":[1],"data":[2,3]}`, // the last wins
	`{"NODE_KEY":"k","Log_Type":"result","DATA":[{}]}`,        // names match without case
	`{"node_key":"k","extra":{"x":[1,{"y":null}]},"data":[{"x":"\u00e9\n"}]}`,
	`{"node_key":"k\u0000\"","data":[]}`,
	`{"node_key":"k","data":[{"x":"\xff"}]}`, // invalid UTF-8: kept as it is
	"{\"node_key\":\"\xff\"}",
	`{"data":[{"name":"q","name":"q"}]}`,
	`{}`,
	`null`,
	// errors, which must be decodeJSON's
	`{"node_key":1}`,
	`{"data":{}}`,
	`{"data":[1,]}`,
	`{"node_key":"k"} {}`,
	`{"node_key":"k"`,
	`[]`,
	``,
	`{"vigil_wait_ms":1.5}`,
	`{"vigil_wait_ms":1e3}`,
	`{"vigil_wait_ms":"1"}`,
	`{"vigil_wait_ms":99999999999999999999}`,
}

func TestDecodeLogRequestAsEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "log_*.json"))
	if len(files) == 0 {
		t.Fatal("no testdata/log_*.json fixtures")
	}
	bodies := append([]string{}, logBodies...)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	fast := 0
	for _, body := range bodies {
		checkLogDecoders(t, []byte(body))
		var req osquery.LogRequest
		if fastLogRequest([]byte(body), &req) {
			fast++
		}
	}
	// The common shapes must take the fast path, or it is dead code.
	for _, body := range append(bodies[:5:5], bodies[len(logBodies):]...) {
		var req osquery.LogRequest
		if !fastLogRequest([]byte(body), &req) {
			t.Errorf("fast path refused %.80q", body)
		}
	}
	t.Logf("%d of %d bodies on the fast path", fast, len(bodies))
}

// checkLogDecoders: decodeLogRequest and decodeJSON agree on body, in the
// request decoded and in the error.
func checkLogDecoders(t *testing.T, body []byte) {
	t.Helper()
	var want, got osquery.LogRequest
	werr := decodeJSON(body, &want)
	gerr := decodeLogRequest(bytes.Clone(body), &got)
	if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
		t.Fatalf("%.100q: error %v, encoding/json's %v", body, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%.100q:\n got %#v\nwant %#v", body, got, want)
	}
}

// FuzzDecodeLogRequest: for any body, the fast /log decoder gives what
// encoding/json gives.
func FuzzDecodeLogRequest(f *testing.F) {
	for _, b := range logBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkLogDecoders(t, body)
	})
}
