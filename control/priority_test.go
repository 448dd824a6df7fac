package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// A live query to a host holding a long poll opens a window in which the
// ingest drainer waits (Yield); the campaign's completion closes it. A
// query only to polling hosts opens none.
func TestLiveQueryPriority(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = time.Hour })
	ctx := context.Background()
	if e.srv.Yield() != nil {
		t.Fatal("a window before any live query")
	}
	_, plain := e.enroll("enroll.json")
	if _, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{plain.ID}}); err != nil {
		t.Fatal(err)
	}
	if e.srv.Yield() != nil {
		t.Fatal("a query to a polling host opened a window: its answer comes at the next poll, seconds away")
	}

	key, h := e.enroll("enroll_vigil.json")
	read := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(ctx, key, 30_000)
		read <- q
	}()
	waitFor(t, "the read is held", func() bool { return e.srv.notify.held(h.ID) })
	c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{h.ID}})
	if err != nil {
		t.Fatal(err)
	}
	win := e.srv.Yield()
	if win == nil {
		t.Fatal("no window for a query to a held host")
	}
	select {
	case <-win:
		t.Fatal("window closed before the answer")
	default:
	}
	if q := <-read; q[c.ID] != "SELECT 1" {
		t.Fatalf("held read answered %v", q)
	}
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key,
		Queries: map[string][]map[string]string{c.ID: {{"1": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
	if r := e.post(osquery.PathDistributedWrite, wb); r.status != 200 {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	select {
	case <-win:
	case <-time.After(10 * time.Second):
		t.Fatal("the completed campaign left the window open (its limit is an hour)")
	}
	if e.srv.Yield() != nil {
		t.Fatal("a window after the only campaign completed")
	}
}

// An unanswered query holds the drainer back only for LiveQueryPriority.
func TestLiveQueryPriorityEnds(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = 50 * time.Millisecond })
	read := queryHeldHost(t, e)
	win := e.srv.Yield()
	if win == nil {
		t.Fatal("no window")
	}
	<-read
	select {
	case <-win:
	case <-time.After(10 * time.Second):
		t.Fatal("the window outlived LiveQueryPriority (50ms) by 10 s")
	}
}

// With LiveQueryPriority negative there is never a window.
func TestLiveQueryPriorityOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = -1 })
	read := queryHeldHost(t, e)
	if e.srv.Yield() != nil {
		t.Fatal("a window although LiveQueryPriority is off")
	}
	<-read
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// queryHeldHost enrolls a long-polling host, waits until its read is held
// and starts a live query to it; the channel gets what the read returned.
func queryHeldHost(t *testing.T, e *env) <-chan map[string]string {
	t.Helper()
	key, h := e.enroll("enroll_vigil.json")
	read := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(context.Background(), key, 30_000)
		read <- q // the query wakes it
	}()
	waitFor(t, "the read is held", func() bool { return e.srv.notify.held(h.ID) })
	if _, err := e.srv.StartCampaign(context.Background(), "alice", "SELECT 1", Target{Hosts: []string{h.ID}}); err != nil {
		t.Fatal(err)
	}
	return read
}

// While a live query has the cores, a host's answer to it is recorded at
// once but acknowledged when the query completes; writes answering
// nothing in the window are acknowledged at once.
func TestAnswersAcknowledgedAfterLiveQuery(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = time.Hour })
	ctx := context.Background()
	keyA, idA, keyB, c := queryTwoHeld(t, e)
	write := func(key, id string) []byte {
		wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: key,
			Queries: map[string][]map[string]string{id: {{"1": "1"}}}, Statuses: map[string]osquery.Int{id: 0}})
		return wb
	}
	// An answer to no campaign of the window is acknowledged at once.
	if r := e.post(osquery.PathDistributedWrite, write(keyA, "no-such-campaign")); r.status != 200 {
		t.Fatalf("write to another campaign: %d %s", r.status, r.body)
	}
	acked := make(chan response, 1)
	go func() { acked <- e.post(osquery.PathDistributedWrite, write(keyA, c.ID)) }()
	waitFor(t, "a's answer is recorded", func() bool {
		h, err := e.db.CampaignHost(ctx, c.ID, idA)
		return err == nil && h.Status == "ok"
	})
	select {
	case r := <-acked:
		t.Fatalf("a's answer acknowledged (%d) while b's was still owed", r.status)
	case <-time.After(200 * time.Millisecond):
	}
	if r := e.post(osquery.PathDistributedWrite, write(keyB, c.ID)); r.status != 200 {
		t.Fatalf("b's write: %d %s", r.status, r.body)
	}
	awaitAck(t, acked, "the query completed")
}

// A write held as the next read (Vigil's long-polling agent) gets its
// status when the live query completes too, and the hold goes on after
// the status.
func TestHeldWriteAcknowledgedAfterLiveQuery(t *testing.T) {
	holdModes(t, func(t *testing.T, e *env) {
		e.srv.opts.LiveQueryPriority = time.Hour
		ctx := context.Background()
		keyA, idA, keyB, c := queryTwoHeld(t, e)
		wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyA, VigilWait: 30_000,
			Queries: map[string][]map[string]string{c.ID: {{"1": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
		req, _ := http.NewRequest("POST", e.http.URL+osquery.PathDistributedWrite, bytes.NewReader(wb))
		type answer struct {
			resp *http.Response
			err  error
		}
		acked := make(chan answer, 1)
		go func() {
			resp, err := e.client.Do(req) // returns with the status
			acked <- answer{resp, err}
		}()
		waitFor(t, "a's answer is recorded", func() bool {
			h, err := e.db.CampaignHost(ctx, c.ID, idA)
			return err == nil && h.Status == "ok"
		})
		select {
		case r := <-acked:
			t.Fatalf("a's held write acknowledged (%v, %v) while b's answer was still owed", r.resp, r.err)
		case <-time.After(200 * time.Millisecond):
		}
		bw, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyB,
			Queries: map[string][]map[string]string{c.ID: {{"1": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
		if r := e.post(osquery.PathDistributedWrite, bw); r.status != 200 {
			t.Fatalf("b's write: %d %s", r.status, r.body)
		}
		var resp *http.Response
		select {
		case r := <-acked:
			if r.err != nil {
				t.Fatal(r.err)
			}
			resp = r.resp
		case <-time.After(10 * time.Second):
			t.Fatal("a's held write not acknowledged 10 s after the query completed")
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(osquery.HeaderHeld) != "1" {
			t.Fatalf("a's held write: %d, headers %v", resp.StatusCode, resp.Header)
		}
		// Still held: the next query comes in its body.
		c2, err := e.srv.StartCampaign(ctx, "alice", "SELECT 2", Target{Hosts: []string{idA}})
		if err != nil {
			t.Fatal(err)
		}
		var got osquery.DistributedWriteResponse
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || !got.VigilHeld || got.Queries[c2.ID] != "SELECT 2" {
			t.Fatalf("a's held write answered %+v, %v; want the second query", got, err)
		}
	})
}

// queryTwoHeld enrolls two long-polling hosts, holds a read for each,
// and starts a live query to both, whose reads it takes; it returns
// their node keys, the first one's host id and the campaign.
func queryTwoHeld(t *testing.T, e *env) (keyA, idA, keyB string, c Campaign) {
	t.Helper()
	ctx := context.Background()
	keyA, a := e.enroll("enroll_vigil.json")
	keyB, b := otherHost(e, 1)
	reads := make(chan map[string]string, 2)
	for _, key := range []string{keyA, keyB} {
		go func() {
			q, _ := e.readQueries(ctx, key, 30_000)
			reads <- q
		}()
	}
	waitFor(t, "both reads are held", func() bool { return e.srv.notify.held(a.ID) && e.srv.notify.held(b.ID) })
	c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{a.ID, b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if q := <-reads; q[c.ID] != "SELECT 1" {
			t.Fatalf("held read answered %v, want the query", q)
		}
	}
	return keyA, a.ID, keyB, c
}

// awaitAck waits for a's write to be acknowledged with 200, at most 10 s
// after what.
func awaitAck(t *testing.T, acked <-chan response, what string) {
	t.Helper()
	select {
	case r := <-acked:
		if r.status != 200 {
			t.Fatalf("a's write: %d %s", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a's answer not acknowledged 10 s after %s", what)
	}
}

// The acknowledgement waits no longer than the window: a host that never
// answers does not hold the others' back.
func TestAnswerAcknowledgedAtWindowEnd(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = 100 * time.Millisecond })
	ctx := context.Background()
	keyA, a := e.enroll("enroll_vigil.json")
	_, b := e.enroll("enroll_vigil.json", "laptop-7", "laptop-8", "9d1b6e2a-7d4f-4a61-9a77-0c2f5b8e1d33", "5c0ffee0-7d4f-4a61-9a77-0c2f5b8e1d34")
	read := make(chan map[string]string, 1)
	go func() {
		q, _ := e.readQueries(ctx, keyA, 30_000)
		read <- q
	}()
	waitFor(t, "a's read is held", func() bool { return e.srv.notify.held(a.ID) })
	c, err := e.srv.StartCampaign(ctx, "alice", "SELECT 1", Target{Hosts: []string{a.ID, b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	<-read
	wb, _ := json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyA,
		Queries: map[string][]map[string]string{c.ID: {{"1": "1"}}}, Statuses: map[string]osquery.Int{c.ID: 0}})
	acked := make(chan response, 1)
	go func() { acked <- e.post(osquery.PathDistributedWrite, wb) }()
	awaitAck(t, acked, "a window of 100ms")
	if got, err := e.db.CampaignSummary(ctx, c.ID); err != nil || got.Pending != 1 || got.OK != 1 {
		t.Fatalf("summary %+v, %v; want a answered, b still owing", got, err)
	}
}

// Live queries started one after another extend the window up to twice
// LiveQueryPriority, not for good: the drainer and detection get a turn.
func TestLiveQueryPriorityBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LiveQueryPriority = 100 * time.Millisecond })
	e.srv.openPriority("first")
	win := e.srv.Yield()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stop := time.After(2 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-win:
			return
		case <-tick.C:
			e.srv.openPriority("next-" + strconv.Itoa(i)) // a new campaign every 20 ms
		case <-stop:
			t.Fatal("campaigns started every 20 ms kept a 100ms window open for 2 s")
		}
	}
}
