package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store/clickhouse"
	"github.com/vigilhq/vigil/store/clickhouse/chtest"
	"github.com/vigilhq/vigil/store/storetest"
)

// server is the package's ClickHouse, started by the first test that
// needs it and stopped by TestMain; nil with skipReason set when it cannot
// run here.
var (
	server     *chtest.Server
	serverDir  string
	serverOnce sync.Once
	skipReason string
	dbCounter  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		server.Stop()
	}
	if serverDir != "" {
		os.RemoveAll(serverDir)
	}
	os.Exit(code)
}

// needServer starts the server once, or skips t.
func needServer(t testing.TB) {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-chtest")
		if err != nil {
			skipReason = err.Error()
			return
		}
		serverDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if server, err = chtest.Start(ctx, dir); err != nil {
			skipReason = err.Error()
			server = nil
		}
	})
	if server == nil {
		t.Skip("no ClickHouse server: " + skipReason)
	}
}

// open returns a store on a database of its own.
func open(t testing.TB, opts clickhouse.Options) *clickhouse.Store {
	t.Helper()
	needServer(t)
	opts.URL = server.URL
	if opts.Database == "" {
		opts.Database = fmt.Sprintf("vigil_test_%d", dbCounter.Add(1))
	}
	s, err := clickhouse.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return open(t, clickhouse.Options{})
	})
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func events(host string, from, n int) vigil.Batch {
	return storetest.Events(host, from, n, t0, time.Second)
}

func TestReopenKeepsSeqAfterRetention(t *testing.T) {
	s := open(t, clickhouse.Options{})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBefore(ctx, t0.Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("DeleteBefore: %d, %v", n, err)
	}
	db := ""
	r, err := s.Query(ctx, "SELECT currentDatabase()")
	if err != nil {
		t.Fatal(err)
	}
	db = r.Rows[0][0].(string)
	s2 := open(t, clickhouse.Options{Database: db})
	if err := s2.Append(ctx, events("h", 100, 1)); err != nil {
		t.Fatal(err)
	}
	r, err = s2.Query(ctx, "SELECT seq FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != int64(11) {
		t.Errorf("seq after retention and reopen: %v, want 11", r.Rows)
	}
}

func TestQueryIsReadOnly(t *testing.T) {
	s := open(t, clickhouse.Options{})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 3)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DROP TABLE process_creation",
		"INSERT INTO process_creation (event_id) VALUES ('x')",
		"ALTER TABLE process_creation DELETE WHERE 1",
		"SET readonly = 0",
		"SELECT * FROM url('http://127.0.0.1:1/', TSV, 'a String')",
		"SELECT * FROM file('x.tsv', TSV, 'a String')",
		"CREATE TABLE x (a UInt8) ENGINE = Memory",
		"SELECT count() FROM process_creation SETTINGS readonly = 0",
	} {
		if _, err := s.Query(ctx, q); !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("%q: %v, want an error wrapping ErrInvalid", q, err)
		}
	}
	r, err := s.Query(ctx, "SELECT count() FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(3) {
		t.Errorf("rows after refused writes: %v", r.Rows[0][0])
	}
}

func TestRowLimit(t *testing.T) {
	s := open(t, clickhouse.Options{RowLimit: 10})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 25)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT seq FROM process_creation ORDER BY seq DESC")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 10 || !r.Truncated || r.Rows[0][0] != int64(25) {
		t.Fatalf("got %d rows (first %v), truncated %v; want 10 from 25, true", len(r.Rows), r.Rows[0], r.Truncated)
	}
	r, err = s.Query(ctx, "SELECT seq FROM process_creation WHERE seq <= ? -- comment\n;", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 10 || r.Truncated {
		t.Errorf("exactly the limit: %d rows, truncated %v", len(r.Rows), r.Truncated)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for _, o := range []clickhouse.Options{{}, {URL: "ftp://x"}, {URL: "http://127.0.0.1:1", Database: "a-b; DROP"}} {
		if _, err := clickhouse.Open(context.Background(), o); !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("Open(%+v): %v, want ErrInvalid", o, err)
		}
	}
	_, err := clickhouse.Open(context.Background(), clickhouse.Options{URL: "http://127.0.0.1:1"})
	if !errors.Is(err, vigil.ErrUnavailable) {
		t.Errorf("Open of a closed port: %v, want ErrUnavailable", err)
	}
}

// TestBoundValuesReadBack: values bound by Bind reach the server as the
// same values (the escaping agrees with ClickHouse's parser).
func TestBoundValuesReadBack(t *testing.T) {
	s := open(t, clickhouse.Options{})
	for _, v := range []string{"it's", `back\slash`, `\'`, "nul\x00byte", "tab\tnew\nline", "ünï ✓", "?", `'; DROP TABLE x; --`, ""} {
		r, err := s.Query(context.Background(), "SELECT ? AS v", v)
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if r.Rows[0][0] != v {
			t.Errorf("bound %q, server read %q", v, r.Rows[0][0])
		}
	}
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.FixedZone("x", -7200))
	r, err := s.Query(context.Background(), "SELECT ? AS t, toUnixTimestamp(?) AS u", at, at)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rows[0][0].(time.Time); !got.Equal(at) || r.Rows[0][1] != at.Unix() {
		t.Errorf("time: %v, %v; want %v", r.Rows[0][0], r.Rows[0][1], at)
	}
}

// TestCredentialsAreSent: a wrong password for the default user is
// refused, so the credentials reach the server.
func TestCredentialsAreSent(t *testing.T) {
	needServer(t)
	_, err := clickhouse.Open(context.Background(), clickhouse.Options{URL: server.URL, User: "default", Password: "wrong", Database: "vigil_auth"})
	if !errors.Is(err, vigil.ErrUnauthorized) || !strings.Contains(strings.ToLower(err.Error()), "password") {
		t.Fatalf("Open with a wrong password: %v, want an authentication error", err)
	}
}
