package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/control"
	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/pki"
	"github.com/vigilhq/vigil/state"
	"github.com/vigilhq/vigil/state/pgtest"
)

const enrollSecret = "web-test-enroll-secret-0123"

type env struct {
	t       *testing.T
	db      *state.DB
	ctl     *control.Server
	api     *API
	agents  *httptest.Server // osquery API
	people  *httptest.Server // people API
	client  *http.Client
	tokens  map[state.Role]string
	timeout time.Duration
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newEnv(t *testing.T, mod func(*control.Options, *Options)) *env {
	t.Helper()
	return newEnvAt(t, filepath.Join(t.TempDir(), "state.db"), mod)
}

// newEnvAt is newEnv on a given state (a SQLite path or a PostgreSQL URL).
func newEnvAt(t *testing.T, statePath string, mod func(*control.Options, *Options)) *env {
	t.Helper()
	db, err := state.Open(context.Background(), statePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	co := control.Options{State: db, EnrollSecret: enrollSecret, QueryTimeout: 10 * time.Second}
	wo := Options{State: db, BadAuthLimit: 1000}
	if mod != nil {
		mod(&co, &wo)
	}
	ctl, err := control.New(co)
	if err != nil {
		t.Fatal(err)
	}
	wo.Control = ctl
	api := New(wo)
	bundle, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := func(h http.Handler) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		s.TLS = bundle.TLSConfig()
		s.StartTLS()
		// Stop the control server first: it releases held long polls,
		// which the HTTP server would otherwise wait out.
		t.Cleanup(func() { ctl.Close(); s.Close() })
		return s
	}
	e := &env{t: t, db: db, ctl: ctl, api: api, agents: start(ctl.Handler()), people: start(api.Handler()),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.CertPool()}}},
		tokens: map[state.Role]string{}}
	for _, role := range []state.Role{state.RoleViewer, state.RoleOperator, state.RoleAdmin} {
		tok, err := db.CreateToken(context.Background(), string(role)+"-user", string(role))
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = tok
	}
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %q", r.status, r.body)
	}
}

func (r resp) errorMsg() string {
	var e errorBody
	json.Unmarshal(r.body, &e)
	return e.Error
}

func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.people.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// agent is a fake agent speaking the osquery API to the control server.
type agent struct {
	e      *env
	key    string
	host   vigil.Host
	answer func(sql string) (rows []map[string]string, status int, msg string)
	// columns, when set, is sent as the rows' column order, as Vigil's
	// agent does (osquery.DistributedWriteRequest.Columns).
	columns []string
}

func (e *env) enroll(ident string, longPoll bool) *agent {
	e.t.Helper()
	details := map[string]map[string]string{"system_info": {"hostname": ident, "uuid": "uuid-" + ident}}
	if longPoll {
		details["vigil"] = map[string]string{"long_poll": "true", "version": "test"}
	}
	var er osquery.EnrollResponse
	e.postAgent(osquery.PathEnroll, osquery.EnrollRequest{EnrollSecret: enrollSecret, HostIdentifier: ident, HostDetails: details}, &er)
	if er.NodeKey == "" {
		e.t.Fatalf("enroll %s failed", ident)
	}
	h, err := e.db.HostByNodeKey(context.Background(), er.NodeKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return &agent{e: e, key: er.NodeKey, host: h}
}

func (e *env) postAgent(path string, body, out any) error {
	b, _ := json.Marshal(body)
	res, err := e.client.Post(e.agents.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s: %d", path, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(out)
}

// run answers live queries until ctx ends, holding distributed/read open
// as Vigil's agent does.
func (a *agent) run(ctx context.Context) {
	for ctx.Err() == nil {
		var rr osquery.DistributedReadResponse
		if err := a.e.postAgent(osquery.PathDistributedRead, osquery.NodeRequest{NodeKey: a.key, VigilWait: 2000}, &rr); err != nil {
			if ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			continue
		}
		if len(rr.Queries) == 0 {
			continue
		}
		wr := osquery.DistributedWriteRequest{NodeKey: a.key, Queries: map[string][]map[string]string{},
			Statuses: map[string]osquery.Int{}, Messages: map[string]string{}}
		for id, sql := range rr.Queries {
			rows, st, msg := a.answer(sql)
			wr.Queries[id], wr.Statuses[id] = rows, osquery.Int(st)
			if a.columns != nil && len(rows) > 0 {
				if wr.Columns == nil {
					wr.Columns = map[string][]string{}
				}
				wr.Columns[id] = a.columns
			}
			if msg != "" {
				wr.Messages[id] = msg
			}
		}
		var out map[string]any
		a.e.postAgent(osquery.PathDistributedWrite, wr, &out)
	}
}

type sseEvent struct {
	name string
	data string
}

// stream reads a query's event stream until done (or the deadline).
func (e *env) stream(id, token string, deadline time.Duration) ([]sseEvent, http.Header) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.people.URL+"/api/v1/queries/"+id+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return e.readEvents(req, 200)
}

// readEvents sends req and reads its server-sent events until done.
func (e *env) readEvents(req *http.Request, status int) ([]sseEvent, http.Header) {
	e.t.Helper()
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != status {
		b, _ := io.ReadAll(res.Body)
		e.t.Fatalf("stream: %d %s, want %d", res.StatusCode, b, status)
	}
	var evs []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				evs = append(evs, cur)
				if cur.name == "done" {
					return evs, res.Header
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		}
	}
	e.t.Fatalf("stream ended without done (%v): %+v", sc.Err(), evs)
	return nil, nil
}
