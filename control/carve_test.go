package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/osquery"
)

func TestCarve(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxCarveBytes = 1 << 20; o.MaxCarveBlockBytes = 300000 })
	ctx := context.Background()
	key, h := e.enroll("enroll.json")
	otherKey, _ := e.enroll("enroll_vigil.json")

	file := make([]byte, 700000)
	rand.Read(file)
	r := e.post(osquery.PathCarveBegin, fixture(t, "carve_begin.json", "NODE_KEY", key, "REQUEST_ID", "q-1"))
	var begin carveBeginResponse
	if r.status != 200 || json.Unmarshal(r.body, &begin) != nil || begin.SessionID == "" || !begin.Success {
		t.Fatalf("begin: %d %s", r.status, r.body)
	}
	block := func(id int, data []byte, extra string) response {
		return e.post(osquery.PathCarveBlock, []byte(fmt.Sprintf(`{"block_id":%d,"session_id":%q,"request_id":"q-1","data":%q%s}`,
			id, begin.SessionID, base64.StdEncoding.EncodeToString(data), extra)))
	}
	chunk := func(i int) []byte { return file[i*300000 : min((i+1)*300000, len(file))] }

	// Blocks out of order, one twice.
	for _, i := range []int{2, 0, 0} {
		if r := block(i, chunk(i), ""); r.status != 200 {
			t.Fatalf("block %d: %d %s", i, r.status, r.body)
		}
	}
	carves, _ := e.db.Carves(ctx, 10)
	if len(carves) != 1 || carves[0].Received != 2 || !carves[0].CompletedAt.IsZero() || carves[0].HostID != h.ID || carves[0].RequestID != "q-1" {
		t.Fatalf("carve after 2 blocks: %+v", carves)
	}
	var out bytes.Buffer
	if err := e.db.WriteCarve(ctx, carves[0].ID, &out); err == nil {
		t.Error("incomplete carve could be read")
	}
	// Bad blocks are refused.
	for name, c := range map[string]struct {
		r    response
		code int
		want string
	}{
		"short":      {block(1, chunk(1)[:10], ""), 400, "want 300000"},
		"range":      {block(3, chunk(2), ""), 400, "out of range"},
		"not base64": {e.post(osquery.PathCarveBlock, []byte(fmt.Sprintf(`{"block_id":1,"session_id":%q,"data":"@@@"}`, begin.SessionID))), 400, "base64"},
		"session":    {e.post(osquery.PathCarveBlock, []byte(`{"block_id":1,"session_id":"nope","data":""}`)), 404, "session"},
		"other host": {block(1, chunk(1), fmt.Sprintf(`,"node_key":%q`, otherKey)), 403, "node key"},
	} {
		if c.r.status != c.code || !strings.Contains(string(c.r.body), c.want) {
			t.Errorf("%s: %d %s, want %d mentioning %q", name, c.r.status, c.r.body, c.code, c.want)
		}
	}
	if r := block(1, chunk(1), fmt.Sprintf(`,"node_key":%q`, key)); r.status != 200 {
		t.Fatalf("block 1: %d %s", r.status, r.body)
	}
	c, _ := e.db.Carve(ctx, carves[0].ID)
	if c.CompletedAt.IsZero() || c.Received != 3 {
		t.Fatalf("carve not complete: %+v", c)
	}
	out.Reset()
	if err := e.db.WriteCarve(ctx, c.ID, &out); err != nil || !bytes.Equal(out.Bytes(), file) {
		t.Fatalf("carve content differs (%d bytes, %v)", out.Len(), err)
	}

	// Begin refusals.
	for name, c := range map[string]struct{ body, want string }{
		"too big":     {`{"block_count":5,"block_size":300000,"carve_size":1500000,"carve_id":"x","node_key":"KEY"}`, "exceeds the server's limit of 1048576"},
		"block size":  {`{"block_count":1,"block_size":400000,"carve_size":400000,"carve_id":"x","node_key":"KEY"}`, "block_size 400000 exceeds"},
		"bad count":   {`{"block_count":2,"block_size":300000,"carve_size":700000,"carve_id":"x","node_key":"KEY"}`, "want 3"},
		"empty carve": {`{"block_count":0,"block_size":300000,"carve_size":0,"carve_id":"x","node_key":"KEY"}`, "must be positive"},
	} {
		r := e.post(osquery.PathCarveBegin, []byte(strings.Replace(c.body, "KEY", key, 1)))
		if r.status != 400 || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", name, r.status, r.body, c.want)
		}
	}
	r = e.post(osquery.PathCarveBegin, fixture(t, "carve_begin.json", "NODE_KEY", "stale"))
	if r.json(t)["node_invalid"] != true {
		t.Errorf("begin with stale key: %s", r.body)
	}
	if n, _ := e.db.Carves(ctx, 10); len(n) != 1 {
		t.Errorf("refused carves were stored: %d", len(n))
	}
}
