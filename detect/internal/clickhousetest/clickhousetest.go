// Package clickhousetest starts a real ClickHouse server (the Debian
// clickhouse-server package) for detect's tests: its own config, data
// directory and ports under t.TempDir(), spoken to over the HTTP
// interface with net/http. Tests skip when the server is not installed.
// Only _test.go files import it.
package clickhousetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Server is a running clickhouse-server.
type Server struct {
	URL string // http://127.0.0.1:port/
}

var _ store.Querier = (*Server)(nil)

const confDir = "/etc/clickhouse-server"

// Start runs a server for the test and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		t.Skip("skipping: clickhouse-server is not installed (apt-get install clickhouse-server)")
	}
	conf, err := os.ReadFile(filepath.Join(confDir, "config.xml"))
	if err != nil {
		t.Skipf("skipping: no ClickHouse config: %v", err)
	}
	users, err := os.ReadFile(filepath.Join(confDir, "users.xml"))
	if err != nil {
		t.Skipf("skipping: no ClickHouse users config: %v", err)
	}
	dir := t.TempDir()
	httpPort, tcpPort, interPort := freePort(t), freePort(t), freePort(t)
	r := strings.NewReplacer(
		"<http_port>8123</http_port>", fmt.Sprintf("<http_port>%d</http_port>", httpPort),
		"<tcp_port>9000</tcp_port>", fmt.Sprintf("<tcp_port>%d</tcp_port>", tcpPort),
		"<interserver_http_port>9009</interserver_http_port>", fmt.Sprintf("<interserver_http_port>%d</interserver_http_port>", interPort),
		"<listen_host>::1</listen_host>", "",
		"/var/lib/clickhouse/", dir+"/data/",
		"/var/log/clickhouse-server/", dir+"/log/",
	)
	cfg := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(cfg, []byte(r.Replace(string(conf))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), users, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+cfg)
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "stdout.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting clickhouse-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d/", httpPort)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "log", "clickhouse-server.err.log"))
			t.Fatalf("clickhouse-server did not become ready: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) post(ctx context.Context, query string, body io.Reader) ([]byte, error) {
	u := s.URL
	if body != nil {
		u += "?query=" + url.QueryEscape(query)
	} else {
		body = strings.NewReader(query)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clickhouse: %s", bytes.TrimSpace(out))
	}
	return out, nil
}

// Exec runs a statement, failing the test on error.
func (s *Server) Exec(t testing.TB, query string) {
	t.Helper()
	if _, err := s.post(context.Background(), query, nil); err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
}

var chTypes = map[schema.Type]string{
	schema.Text: "String", schema.BigInt: "Int64", schema.Double: "Float64",
	schema.Bool: "UInt8", schema.Timestamp: "DateTime",
}

// CreateTable creates an event table with Nullable columns.
func (s *Server) CreateTable(t testing.TB, tbl schema.Table) {
	t.Helper()
	var cols []string
	for _, c := range tbl.AllColumns() {
		cols = append(cols, "`"+c.Name+"` Nullable("+chTypes[c.Type]+")")
	}
	s.Exec(t, "CREATE TABLE `"+tbl.Name+"` ("+strings.Join(cols, ", ")+") ENGINE = Memory")
}

// Insert adds rows (column -> value; time.Time values are sent as UTC
// "YYYY-MM-DD hh:mm:ss").
func (s *Server) Insert(t testing.TB, table string, rows []map[string]any) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range rows {
		m := map[string]any{}
		for k, v := range r {
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC().Format(time.DateTime)
			}
			m[k] = v
		}
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.post(context.Background(), "INSERT INTO `"+table+"` FORMAT JSONEachRow", &b); err != nil {
		t.Fatalf("inserting into %s: %v", table, err)
	}
}

// Query implements store.Querier; it takes no arguments (the HTTP
// interface of ClickHouse 18.16 has no query parameters).
func (s *Server) Query(ctx context.Context, query string, args ...any) (*store.Rows, error) {
	if len(args) > 0 {
		return nil, fmt.Errorf("clickhousetest: query arguments are not supported")
	}
	out, err := s.post(ctx, query+" FORMAT JSONCompact", nil)
	if err != nil {
		return nil, err
	}
	var res struct {
		Meta []struct{ Name string } `json:"meta"`
		Data [][]any                 `json:"data"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("decoding clickhouse result: %w", err)
	}
	rows := &store.Rows{Rows: res.Data}
	for _, m := range res.Meta {
		rows.Columns = append(rows.Columns, m.Name)
	}
	return rows, nil
}
