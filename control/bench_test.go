package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
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

// BenchmarkLiveQuery: one live query to hosts that all hold a
// distributed/read open (long poll) over TLS, from start until the done
// event; VIGIL_BENCH_HOSTS sets how many (default 1,000). Each simulated
// host answers at once and holds the next read.
func BenchmarkLiveQuery(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("VIGIL_BENCH_HOSTS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys := make([]string, n)
	for i := range keys {
		h := vigil.Host{Identifier: fmt.Sprint("lq-", i), UUID: fmt.Sprint("uuid-", i), Hostname: fmt.Sprint("lq-", i), LongPoll: true}
		_, key, err := e.db.EnrollHost(ctx, h)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = key
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: e.client.Transport.(*http.Transport).Clone()}
			defer c.CloseIdleConnections()
			post := func(path string, body []byte) []byte {
				req, _ := http.NewRequestWithContext(ctx, "POST", e.http.URL+path, bytes.NewReader(body))
				resp, err := c.Do(req)
				if err != nil {
					return nil
				}
				defer resp.Body.Close()
				out, _ := io.ReadAll(resp.Body)
				return out
			}
			for ctx.Err() == nil {
				var dr osquery.DistributedReadResponse
				if json.Unmarshal(post(osquery.PathDistributedRead, nodeBody(key, 30_000)), &dr) != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if len(dr.Queries) == 0 {
					continue
				}
				wr := osquery.DistributedWriteRequest{NodeKey: key, Queries: map[string][]map[string]string{}, Statuses: map[string]osquery.Int{}}
				for id := range dr.Queries {
					wr.Queries[id] = []map[string]string{{"answer": "42"}}
				}
				body, _ := json.Marshal(wr)
				post(osquery.PathDistributedWrite, body)
			}
		}()
	}
	waitHeld := func() {
		for e.srv.stats.heldReads.Load() < int64(n) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHeld()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		waitHeld()
		b.StartTimer()
		c, err := e.srv.StartCampaign(ctx, "bench", "SELECT 42 AS answer", Target{All: true})
		if err != nil {
			b.Fatal(err)
		}
		ch, stop := e.srv.Subscribe(c.ID)
		var last CampaignEvent
		for ev := range ch {
			last = ev
		}
		stop()
		if last.Type != EventDone || last.Summary.OK != n {
			b.Fatalf("campaign ended with %+v, want %d ok", last, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
}
