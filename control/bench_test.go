package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/vigilhq/vigil/osquery"
)

// BenchmarkLogRequest: one result log request of 50 event-format lines
// over TLS, from enrolled agents in parallel, into a sink that keeps
// nothing.
func BenchmarkLogRequest(b *testing.B) {
	e := newEnv(b, nil)
	e.sink.discard = true
	var keys []string
	for i := range 16 {
		key, _ := e.enroll("enroll.json", "web-01.example", fmt.Sprint("bench-", i))
		keys = append(keys, key)
	}
	lines := make([]json.RawMessage, 50)
	for i := range lines {
		lines[i], _ = json.Marshal(osquery.ResultLine{Name: "processes", HostIdentifier: "bench", Action: "added", Counter: osquery.Int(i),
			Columns: map[string]string{"pid": fmt.Sprint(i), "path": "/usr/bin/bench", "cmdline": "bench --flag value"}})
	}
	bodies := make([][]byte, len(keys))
	for i, k := range keys {
		bodies[i], _ = json.Marshal(osquery.LogRequest{NodeKey: k, LogType: "result", Data: lines})
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	var next int64
	b.RunParallel(func(pb *testing.PB) {
		body := bodies[int(next)%len(bodies)]
		next++
		for pb.Next() {
			resp, err := e.client.Post(e.http.URL+osquery.PathLog, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}
