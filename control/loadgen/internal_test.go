package loadgen

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// An agent's request that waits for its one connection, busy with a held
// read, is timed from when it has the connection: the wait is the agent's.
func TestTracedLeavesOutTheWaitForTheConnection(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			time.Sleep(time.Second)
		}
	}))
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxConnsPerHost: 1,
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := c.Get(srv.URL + "/held")
		if err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the held request has the connection
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/quick", nil)
	start := time.Now()
	req, elapsed := traced(req)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wall, got := time.Since(start), elapsed()
	wg.Wait()
	if wall < 500*time.Millisecond {
		t.Fatalf("the quick request did not wait for the connection (%v): the test proves nothing", wall)
	}
	if got > wall/2 {
		t.Errorf("timed %v of a %v wait-and-request; the wait for the connection was counted", got, wall)
	}
}

// The hand-encoded log body is valid JSON and decodes to the lines
// encoding/json would have sent.
func TestLogBody(t *testing.T) {
	a := &simAgent{g: &fleet{opts: Options{LinesPerLog: 3}}, key: `k"ey\`, ident: "loadgen-7"}
	now := time.Unix(1_790_000_000, 0)
	var held osquery.LogRequest
	if err := json.Unmarshal(a.logBody(now, 2500), &held); err != nil || held.VigilWait != 2500 {
		t.Fatalf("held log body: %v, vigil_wait_ms %d", err, held.VigilWait)
	}
	var got osquery.LogRequest
	if err := json.Unmarshal(a.logBody(now, 0), &got); err != nil {
		t.Fatalf("log body is not JSON: %v", err)
	}
	if got.NodeKey != `k"ey\` || got.LogType != osquery.LogTypeResult || len(got.Data) != 3 || got.VigilWait != 0 {
		t.Fatalf("request %+v", got)
	}
	for i, raw := range got.Data {
		var l osquery.ResultLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		n := len(held.Data) + i + 1 // the counter goes on from the held body's lines
		want := osquery.ResultLine{Name: "process_events", HostIdentifier: "loadgen-7", CalendarTime: osquery.CalendarTime(now),
			UnixTime: osquery.Int(now.Unix()), Counter: osquery.Int(n), Action: osquery.ActionAdded,
			Columns: map[string]string{"pid": strconv.Itoa(1000 + n), "path": "/usr/bin/true", "cmdline": "true " + strconv.Itoa(n),
				"parent": "1", "uid": "0", "time": strconv.FormatInt(now.Unix(), 10)}}
		if !reflect.DeepEqual(l, want) {
			t.Errorf("line %d:\n got %+v\nwant %+v", i, l, want)
		}
	}
}
