package control

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// A live query's rows keep the SELECT's column order from the host's
// write to the campaign's events, live and replayed, and to the stored
// campaign: osquery's raw body (keys in column order) and Vigil's agent's
// marshalled request both.
func TestDistributedColumnOrder(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	keyA, a := e.enroll("enroll.json")
	keyB, b := e.enroll("enroll_vigil.json")
	camp, err := e.srv.StartCampaign(ctx, "alice", "SELECT pid, name, cmdline FROM processes", Target{All: true})
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := e.srv.Subscribe(camp.ID)
	defer cancel()
	e.readQueries(ctx, keyA, 0)
	e.readQueries(ctx, keyB, 0)

	want := []string{"pid", "name", "cmdline"}
	// osquery: the raw body, not alphabetical.
	raw := fmt.Sprintf(`{"node_key":%q,"queries":{%q:[{"pid":"1","name":"init","cmdline":"/sbin/init"},{"pid":"2","name":"kthreadd","cmdline":""}]},"statuses":{%q:0}}`,
		keyA, camp.ID, camp.ID)
	if r := e.post(osquery.PathDistributedWrite, []byte(raw)); r.status != 200 {
		t.Fatalf("write A: %d %s", r.status, r.body)
	}
	// Vigil's agent: a request with Columns, as agent/distributed.go sends it.
	wb, err := json.Marshal(osquery.DistributedWriteRequest{NodeKey: keyB,
		Queries:  map[string][]map[string]string{camp.ID: {{"pid": "7", "name": "sshd", "cmdline": "sshd -D"}}},
		Statuses: map[string]osquery.Int{camp.ID: 0},
		Columns:  map[string][]string{camp.ID: want}})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.post(osquery.PathDistributedWrite, wb); r.status != 200 {
		t.Fatalf("write B: %d %s", r.status, r.body)
	}

	check := func(what string, evs []CampaignEvent) {
		t.Helper()
		results := map[string]CampaignEvent{}
		for _, ev := range evs {
			if ev.Type == EventResult {
				results[ev.HostID] = ev
			}
		}
		for _, id := range []string{a.ID, b.ID} {
			if ev := results[id]; !slices.Equal(ev.Columns, want) || len(ev.Rows) == 0 || ev.Rows[0]["pid"] == "" {
				t.Errorf("%s: host %s result %+v, want columns %q", what, id, ev, want)
			}
		}
	}
	check("live", collect(t, events, 5*time.Second))
	replay, cancel2 := e.srv.Subscribe(camp.ID)
	defer cancel2()
	check("replay", collect(t, replay, 5*time.Second))

	c, err := e.db.GetCampaign(ctx, camp.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts {
		if !slices.Equal(h.Columns, want) {
			t.Errorf("stored host %s columns %q", h.HostID, h.Columns)
		}
	}
}

// oldWrite is DistributedWriteRequest as it was before column order was
// kept: encoding/json decoding its rows into maps.
type oldWrite struct {
	NodeKey   string                         `json:"node_key"`
	Queries   map[string][]map[string]string `json:"queries"`
	Statuses  map[string]osquery.Int         `json:"statuses,omitempty"`
	Messages  map[string]string              `json:"messages,omitempty"`
	VigilWait int                            `json:"vigil_wait_ms,omitempty"`
}

// BenchmarkDecodeDistributedWrite: the server's decoding of a write
// (decodeJSON) answering one query with 1 or 50 rows of 10 columns, before
// (oldWrite) and after (DistributedWriteRequest) column order was kept.
func BenchmarkDecodeDistributedWrite(b *testing.B) {
	for _, n := range []int{1, 50} {
		rows := make([]map[string]string, n)
		cols := []string{"pid", "name", "path", "cmdline", "state", "uid", "gid", "parent", "start_time", "resident_size"}
		for i := range rows {
			rows[i] = map[string]string{"pid": fmt.Sprint(1000 + i), "name": fmt.Sprint("proc-", i), "path": fmt.Sprint("/usr/bin/proc-", i),
				"cmdline": fmt.Sprint("/usr/bin/proc-", i, " --flag value"), "state": "S", "uid": "1000", "gid": "1000",
				"parent": "1", "start_time": "1764230400", "resident_size": "123456"}
		}
		body, err := json.Marshal(osquery.DistributedWriteRequest{NodeKey: "0123456789abcdef0123456789abcdef",
			Queries: map[string][]map[string]string{"c0ffee": rows}, Statuses: map[string]osquery.Int{"c0ffee": 0},
			Columns: map[string][]string{"c0ffee": cols}, VigilWait: 300000})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rows=%d/old", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w oldWrite
				if err := decodeJSON(body, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rows=%d/ordered", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w osquery.DistributedWriteRequest
				if err := decodeJSON(body, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A write whose row has a value of the wrong type is a 400 that says
// where: offset, query id, row and column.
func TestDecodeWriteRowErrorSaysWhere(t *testing.T) {
	var w osquery.DistributedWriteRequest
	err := decodeJSON([]byte(`{"node_key":"k","queries":{"q":[{"pid":1}]}}`), &w)
	want := `invalid JSON at offset 40: field queries["q"][0]["pid"]: got number, want string`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
