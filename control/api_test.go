package control

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/state"
)

func TestEnroll(t *testing.T) {
	e := newEnv(t, nil)
	key, h := e.enroll("enroll.json")
	if h.Identifier != "web-01.example" || h.Hostname != "web-01.example" || h.UUID != "4C4C4544-0054-3510-8052-B4C04F4B4E31" ||
		h.Platform != "ubuntu" || h.AgentName != "osquery" || h.AgentVersion != "5.12.1" || h.LongPoll ||
		!strings.HasPrefix(h.OSVersion, "Ubuntu 22.04") || !strings.Contains(h.DetailsJSON, "PowerEdge R640") || h.RemoteAddr == "" {
		t.Errorf("host from enroll.json: %+v", h)
	}
	// Enrolling again (osquery re-enrolls after node_invalid) keeps the host.
	key2, h2 := e.enroll("enroll.json")
	if h2.ID != h.ID || key2 == key {
		t.Errorf("re-enroll: host %s -> %s, same key %v", h.ID, h2.ID, key == key2)
	}

	_, v := e.enroll("enroll_vigil.json")
	if v.AgentName != "vigil-agent" || !v.LongPoll || v.AgentVersion != "0.1.0-dev" || v.Platform != "debian" {
		t.Errorf("vigil agent host: %+v", v)
	}

	// Wrong secret: 401 with node_invalid and an error; nothing stored.
	before, _ := e.db.Hosts(context.Background())
	r := e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", "wrong", "web-01.example", "intruder"))
	if m := r.json(t); r.status != 401 || m["node_invalid"] != true || m["error"] == "" || m["node_key"] != nil {
		t.Errorf("wrong secret: %d %s", r.status, r.body)
	}
	// Empty secret too.
	r = e.post(osquery.PathEnroll, []byte(`{"host_identifier":"x"}`))
	if r.status != 401 {
		t.Errorf("no secret: %d %s", r.status, r.body)
	}
	after, _ := e.db.Hosts(context.Background())
	if len(after) != len(before) {
		t.Errorf("refused enrollment stored a host: %d -> %d", len(before), len(after))
	}
	// Empty host identifier: 400.
	r = e.post(osquery.PathEnroll, []byte(fmt.Sprintf(`{"enroll_secret":%q,"host_identifier":" "}`, testSecret)))
	if r.status != 400 || !strings.Contains(string(r.body), "host_identifier") {
		t.Errorf("empty identifier: %d %s", r.status, r.body)
	}
}

func TestEnrollWithStoredSecretOnly(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.EnrollSecret = "" })
	// No secret at all configured: everything refused.
	r := e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", ""))
	if r.status != 401 {
		t.Fatalf("enroll with no secret configured: %d %s", r.status, r.body)
	}
	if err := e.db.AddEnrollSecret(context.Background(), "2026-q4", "rotated-secret-abcdefghij", time.Time{}); err != nil {
		t.Fatal(err)
	}
	r = e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", "rotated-secret-abcdefghij"))
	if r.status != 200 || r.json(t)["node_key"] == nil {
		t.Errorf("stored secret: %d %s", r.status, r.body)
	}
}

func TestConfig(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll.json")
	check := func(name string, r response) {
		t.Helper()
		var cfg osquery.Config
		if r.status != 200 || json.Unmarshal(r.body, &cfg) != nil || cfg.NodeInvalid {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		if cfg.Schedule["processes"].Query != testConfig.Schedule["processes"].Query || len(cfg.Packs) != 2 {
			t.Errorf("%s: served %s", name, r.body)
		}
	}
	check("key in body", e.post(osquery.PathConfig, fixture(t, "config.json", "NODE_KEY", key)))
	check("key in header", e.post(osquery.PathConfig, []byte(`{}`), "Authorization", "NodeKey "+key))

	r := e.post(osquery.PathConfig, fixture(t, "config.json", "NODE_KEY", "not-a-key"))
	if m := r.json(t); r.status != 200 || m["node_invalid"] != true || m["schedule"] != nil {
		t.Errorf("unknown key: %d %s", r.status, r.body)
	}
	r = e.post(osquery.PathConfig, []byte(`{}`))
	if m := r.json(t); r.status != 200 || m["node_invalid"] != true {
		t.Errorf("no key: %d %s", r.status, r.body)
	}

	for name, want := range map[string]string{
		"processes": "processes", "process_audit": "process_events", "pack_net_sockets": "socket_events", "unknown": "",
	} {
		if got := e.srv.OsqueryTableOf(name); got != want {
			t.Errorf("OsqueryTableOf(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestLog(t *testing.T) {
	e := newEnv(t, nil)
	key, h := e.enroll("enroll.json")
	r := e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", key))
	if r.status != 200 {
		t.Fatalf("result log: %d %s", r.status, r.body)
	}
	r = e.post(osquery.PathLog, fixture(t, "log_status.json", "NODE_KEY", key))
	if r.status != 200 {
		t.Fatalf("status log: %d %s", r.status, r.body)
	}
	calls := e.sink.Calls()
	if len(calls) != 2 || calls[0].logType != "result" || len(calls[0].lines) != 4 || calls[1].logType != "status" || len(calls[1].lines) != 2 {
		t.Fatalf("sink calls: %+v", calls)
	}
	if calls[0].host.ID != h.ID || calls[0].host.Hostname != "web-01.example" {
		t.Errorf("sink got host %+v", calls[0].host)
	}
	var line osquery.ResultLine
	if err := json.Unmarshal(calls[0].lines[2], &line); err != nil || line.Action != "snapshot" || len(line.Snapshot) != 2 {
		t.Errorf("line passed unchanged? %s (%v)", calls[0].lines[2], err)
	}

	// Unknown node key: node_invalid, nothing ingested.
	r = e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", "stale"))
	if m := r.json(t); r.status != 200 || m["node_invalid"] != true || len(e.sink.Calls()) != 2 {
		t.Errorf("stale key: %d %s, %d calls", r.status, r.body, len(e.sink.Calls()))
	}
	// Bad log type.
	r = e.post(osquery.PathLog, []byte(fmt.Sprintf(`{"node_key":%q,"log_type":"debug","data":[{}]}`, key)))
	if r.status != 400 || !strings.Contains(r.json(t)["error"].(string), "debug") {
		t.Errorf("bad log_type: %d %s", r.status, r.body)
	}
	// Ingest unavailable: 503 with Retry-After.
	e.sink.mu.Lock()
	e.sink.err = fmt.Errorf("wal full: %w", vigil.ErrUnavailable)
	e.sink.mu.Unlock()
	r = e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", key))
	if r.status != 503 || r.header.Get("Retry-After") == "" || r.json(t)["error"] == "" {
		t.Errorf("unavailable: %d %v %s", r.status, r.header, r.body)
	}
	// Any other failure: 500 with a JSON error that does not leak internals.
	e.sink.mu.Lock()
	e.sink.err = errors.New("disk on fire at /secret/path")
	e.sink.mu.Unlock()
	r = e.post(osquery.PathLog, fixture(t, "log_result.json", "NODE_KEY", key))
	if r.status != 500 || r.json(t)["error"] == "" || strings.Contains(string(r.body), "/secret/path") {
		t.Errorf("failure: %d %s", r.status, r.body)
	}
}

func TestLogGzip(t *testing.T) {
	e := newEnv(t, nil)
	key, _ := e.enroll("enroll.json")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(fixture(t, "log_result.json", "NODE_KEY", key))
	zw.Close()
	r := e.post(osquery.PathLog, buf.Bytes(), "Content-Encoding", "gzip")
	if r.status != 200 || len(e.sink.Calls()) != 1 {
		t.Fatalf("gzip log: %d %s", r.status, r.body)
	}
	r = e.post(osquery.PathLog, []byte("not gzip"), "Content-Encoding", "gzip")
	if r.status != 400 {
		t.Errorf("bad gzip: %d %s", r.status, r.body)
	}
	r = e.post(osquery.PathLog, []byte("{}"), "Content-Encoding", "br")
	if r.status != 415 {
		t.Errorf("unknown encoding: %d %s", r.status, r.body)
	}
}

func TestMalformedAndOversized(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBodyBytes = 4096; o.MaxOtherBodyBytes = 2048; o.MaxCarveBlockBytes = 3072 })
	ctx := context.Background()
	key, _ := e.enroll("enroll.json")
	hostsBefore, _ := e.db.Hosts(ctx)
	// A carve in progress, so that a bad carve/block has a session to
	// (wrongly) store into.
	r := e.post(osquery.PathCarveBegin, []byte(fmt.Sprintf(`{"block_count":1,"block_size":3000,"carve_size":3000,"carve_id":"c","request_id":"q","node_key":%q}`, key)))
	var begin carveBeginResponse
	if r.status != 200 || json.Unmarshal(r.body, &begin) != nil || begin.SessionID == "" {
		t.Fatalf("carve/begin: %d %s", r.status, r.body)
	}

	paths := []string{osquery.PathEnroll, osquery.PathConfig, osquery.PathLog, osquery.PathDistributedRead, osquery.PathDistributedWrite,
		osquery.PathCarveBegin, osquery.PathCarveBlock}
	for _, p := range paths {
		// Malformed: the error names the offset.
		r := e.post(p, []byte(fmt.Sprintf(`{"node_key": %q, "session_id": %q, "block_id": 0, "log_type": "result", "data": [{"a": 1},]}`, key, begin.SessionID)))
		msg, _ := r.json(t)["error"].(string)
		if r.status != 400 || !strings.HasPrefix(msg, "invalid JSON at offset ") {
			t.Errorf("%s malformed: %d %s", p, r.status, r.body)
		}
		// Wrong type.
		field := "node_key"
		switch p {
		case osquery.PathEnroll:
			field = "enroll_secret"
		case osquery.PathCarveBlock:
			field = "session_id" // carve/block's credential
		}
		r = e.post(p, []byte(fmt.Sprintf(`{%q: 42}`, field)))
		msg, _ = r.json(t)["error"].(string)
		if r.status != 400 || !strings.Contains(msg, field) {
			t.Errorf("%s wrong type: %d %s", p, r.status, r.body)
		}
		// Empty.
		r = e.post(p, nil)
		if r.status != 400 {
			t.Errorf("%s empty: %d %s", p, r.status, r.body)
		}
		// Oversized: the limit is named.
		limit := int64(2048)
		switch p {
		case osquery.PathLog, osquery.PathDistributedWrite:
			limit = 4096
		case osquery.PathCarveBlock:
			// A block's base64 (4/3 of MaxCarveBlockBytes) plus 8 KiB
			// for the other fields.
			limit = 3072/3*4 + 8<<10
		}
		big := fmt.Sprintf(`{"node_key": %q, "session_id": %q, "block_id": 0, "log_type": "result", "data": [%q]}`,
			key, begin.SessionID, strings.Repeat("x", int(limit)))
		r = e.post(p, []byte(big))
		msg, _ = r.json(t)["error"].(string)
		if want := fmt.Sprintf("body exceeds %d bytes", limit); r.status != 400 || !strings.HasPrefix(msg, want) {
			t.Errorf("%s oversized: %d %s, want %q", p, r.status, r.body, want)
		}
	}
	// A gzip body small on the wire but large decompressed is refused too.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	fmt.Fprintf(zw, `{"node_key": %q, "log_type": "result", "data": [%q]}`, key, strings.Repeat("x", 100000))
	zw.Close()
	r = e.post(osquery.PathLog, buf.Bytes(), "Content-Encoding", "gzip")
	if r.status != 400 || !strings.Contains(string(r.body), "exceeds 4096 bytes") {
		t.Errorf("gzip bomb: %d %s", r.status, r.body)
	}

	if n := len(e.sink.Calls()); n != 0 {
		t.Errorf("bad requests reached ingest: %d calls", n)
	}
	hostsAfter, _ := e.db.Hosts(ctx)
	if len(hostsAfter) != len(hostsBefore) {
		t.Errorf("bad requests stored hosts")
	}
	// No carve begun and no block stored: only the good carve, empty.
	if carves, err := e.db.Carves(ctx, 10); err != nil || len(carves) != 1 || carves[0].Received != 0 {
		t.Errorf("after bad carve requests: %+v (%v), want the one carve begun, with no block", carves, err)
	}
}

func TestLastSeenUpdated(t *testing.T) {
	now := time.Now()
	clock := now
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return clock }; o.SeenFlush = time.Hour })
	key, h := e.enroll("enroll.json")
	clock = now.Add(10 * time.Minute)
	e.post(osquery.PathConfig, fixture(t, "config.json", "NODE_KEY", key))
	// Seen at once in memory (Online/Hosts) ...
	hosts, _ := e.srv.Hosts(context.Background())
	if len(hosts) != 1 || !hosts[0].LastSeen.Equal(clock) || !e.srv.Online(h) {
		t.Errorf("in-memory last seen: %+v", hosts)
	}
	// ... and written in a batch (here: at Close).
	e.srv.Close()
	stored, _ := e.db.Host(context.Background(), h.ID)
	if stored.LastSeen.UnixNano() != clock.UnixNano() {
		t.Errorf("stored last_seen %v, want %v", stored.LastSeen, clock)
	}
	clock = now.Add(time.Hour)
	if e.srv.Online(stored) {
		t.Error("host online an hour after its last check-in")
	}
}

func TestBadEnrollSecretLimitedAndAudited(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.BadSecretLimit = 3; o.BadSecretWindow = time.Hour })
	for i := range 3 {
		r := e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", fmt.Sprint("guess", i)))
		if r.status != 401 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	// The right secret now waits too: guessing from this address is blocked.
	r := e.post(osquery.PathEnroll, fixture(t, "enroll.json", "ENROLL_SECRET", testSecret))
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.json(t)["node_invalid"] != true {
		t.Errorf("after the limit: %d %s", r.status, r.body)
	}
	log, _ := e.db.AuditLog(context.Background(), state.AuditFilter{Action: "enroll.bad_secret"})
	if len(log) != 2 || log[0].Target != "web-01.example" || log[0].Source == "" {
		t.Errorf("audit %+v", log)
	}
}

func TestDuplicateHostIdentifiers(t *testing.T) {
	e := newEnv(t, nil)
	// Two machines cloned from one image: same hostname, different uuid.
	_, a := e.enroll("enroll.json")
	_, b := e.enroll("enroll.json", "4C4C4544-0054-3510-8052-B4C04F4B4E31", "11111111-2222-3333-4444-555555555555")
	if a.ID == b.ID || a.Identifier != b.Identifier {
		t.Fatalf("hosts %s and %s", a.ID, b.ID)
	}
	// A live query by that name reaches both.
	c, err := e.srv.StartCampaign(context.Background(), "x", "SELECT 1", Target{Hosts: []string{"web-01.example"}})
	if err != nil || len(c.Hosts) != 2 {
		t.Errorf("campaign by duplicate name: %+v %v", c.Hosts, err)
	}
}
