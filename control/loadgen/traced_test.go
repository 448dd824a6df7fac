package loadgen

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
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
