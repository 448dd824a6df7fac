// Package clickhouse is the event store for many hosts: the tables of the
// schema in a ClickHouse database, spoken to over ClickHouse's HTTP
// interface with explicit column lists, from server version 18.16 (what
// Debian ships) on. It implements store.Appender, store.Querier and
// store.Retainer; cmd/vigil wires it.
//
// Rows are inserted as TabSeparated with explicit column lists. The ids of
// a batch go to the server as external data for the duplicate check, so
// appends are idempotent by event id. seq is assigned by this process and
// appends are serialised, so one Store must be the only writer of its
// database (with Kafka in front, one consumer writes). Queries run with
// readonly=1, which also forbids table functions (url, file, remote).
//
// Differences from DuckDB, from the 18.16 server: timestamps are whole
// seconds (DateTime), an event without a time is stored at the Unix epoch,
// and DeleteBefore waits for the ALTER ... DELETE mutation to finish.
package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Options configures Open.
type Options struct {
	// URL of the HTTP interface, e.g. http://127.0.0.1:8123.
	URL string
	// Database holds Vigil's tables; created when missing (default "vigil").
	Database string
	// User and Password authenticate (X-ClickHouse-User/-Key headers).
	User, Password string
	Logger         *slog.Logger
	// RowLimit bounds the rows Query returns; 0 means store.DefaultRowLimit.
	RowLimit int
	// Now is the clock for ingested_at; nil means time.Now.
	Now func() time.Time
	// Client is the HTTP client; nil means one with a 5-minute timeout.
	Client *http.Client
	// MaxResultViews caps the per-query result views (results_<query>);
	// 0 means store.DefaultMaxResultViews.
	MaxResultViews int
	// MutationTimeout bounds how long DeleteBefore waits for ClickHouse to
	// apply the delete (default 5 minutes).
	MutationTimeout time.Duration
}

// Store is a ClickHouse event store. It is safe for concurrent use.
type Store struct {
	opts   Options
	base   *url.URL
	log    *slog.Logger
	tables map[string]*table
	order  []*table
	views  *store.ResultViews

	mu sync.Mutex // serialises writes
}

var (
	_ store.Appender = (*Store)(nil)
	_ store.Querier  = (*Store)(nil)
	_ store.Retainer = (*Store)(nil)
)

const metaTable = "vigil_meta"

// Open connects, creates the database and every table of the schema (or
// adds the columns a newer schema has) and records schema.Version.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.URL == "" {
		return nil, fmt.Errorf("clickhouse: open: empty URL: %w", vigil.ErrInvalid)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("clickhouse: open: URL %q is not http(s)://host:port: %w", opts.URL, vigil.ErrInvalid)
	}
	if opts.Database == "" {
		opts.Database = "vigil"
	}
	if !validIdent(opts.Database) {
		return nil, fmt.Errorf("clickhouse: open: database name %q: use letters, digits and _: %w", opts.Database, vigil.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RowLimit <= 0 {
		opts.RowLimit = store.DefaultRowLimit
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 5 * time.Minute}
	}
	if opts.MutationTimeout <= 0 {
		opts.MutationTimeout = 5 * time.Minute
	}
	s := &Store{opts: opts, base: u, log: opts.Logger.With("component", "store.clickhouse"), tables: map[string]*table{}}
	s.views = store.NewResultViews(opts.MaxResultViews, s.log)
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("clickhouse: open %s/%s: %w", u.Host, opts.Database, err)
	}
	return s, nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ident quotes an identifier; identifiers come only from the schema and
// Options.Database (checked by validIdent).
func ident(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

func (s *Store) qualified(table string) string { return ident(s.opts.Database) + "." + ident(table) }

func (s *Store) migrate(ctx context.Context) error {
	// The database may not exist yet: this one statement runs in "default".
	body, err := s.request(ctx, "CREATE DATABASE IF NOT EXISTS "+ident(s.opts.Database), nil, "", url.Values{"database": {"default"}})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, body)
	body.Close()
	if err := s.exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.qualified(metaTable)+
		" (key String, value String, at DateTime('UTC')) ENGINE = MergeTree() ORDER BY key"); err != nil {
		return err
	}
	stored, err := s.metaInt(ctx, "schema_version")
	if err != nil {
		return err
	}
	if stored > schema.Version {
		return fmt.Errorf("database has schema version %d, this binary knows up to %d: upgrade vigil: %w", stored, schema.Version, vigil.ErrConflict)
	}
	defs := make([]*table, 0, len(schema.Tables())+1)
	for _, t := range schema.Tables() {
		defs = append(defs, newTable(t.Name, t.AllColumns()))
	}
	defs = append(defs, newTable(schema.ResultsTable, append(append([]schema.Column{}, schema.Common...), schema.ResultsColumns...)))
	for _, t := range defs {
		if err := s.ensure(ctx, t); err != nil {
			return err
		}
		s.tables[t.name] = t
		s.order = append(s.order, t)
	}
	if err := s.initViews(ctx, stored); err != nil {
		return err
	}
	if stored != schema.Version {
		if err := s.setMeta(ctx, "schema_version", fmt.Sprint(schema.Version)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) metaInt(ctx context.Context, key string) (int64, error) {
	q, err := Bind("SELECT max(toInt64OrZero(value)) FROM "+s.qualified(metaTable)+" WHERE key = ?", key)
	if err != nil {
		return 0, err
	}
	r, err := s.query(ctx, q, 1, false)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", key, err)
	}
	if len(r.Rows) == 0 {
		return 0, nil
	}
	n, _ := r.Rows[0][0].(int64)
	return n, nil
}

func (s *Store) setMeta(ctx context.Context, key, value string) error {
	q, err := Bind("INSERT INTO "+s.qualified(metaTable)+" (key, value, at) VALUES (?, ?, ?)", key, value, s.opts.Now())
	if err != nil {
		return err
	}
	return s.exec(ctx, q)
}

// Dialect reports store.ClickHouse.
func (s *Store) Dialect() store.Dialect { return store.ClickHouse }

// Close releases idle connections.
func (s *Store) Close() error {
	s.opts.Client.CloseIdleConnections()
	return nil
}

// request sends one statement. body, when not nil, is the data of an
// INSERT (then the statement goes in the URL). params are settings.
func (s *Store) request(ctx context.Context, stmt string, body io.Reader, contentType string, params url.Values) (io.ReadCloser, error) {
	u := *s.base
	if params == nil {
		params = url.Values{}
	}
	if params.Get("database") == "" {
		params.Set("database", s.opts.Database)
	}
	if body == nil {
		body = strings.NewReader(stmt)
	} else {
		params.Set("query", stmt)
	}
	u.RawQuery = params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.opts.User != "" {
		req.Header.Set("X-ClickHouse-User", s.opts.User)
		req.Header.Set("X-ClickHouse-Key", s.opts.Password)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w: %w", vigil.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, serverError(resp.StatusCode, msg)
	}
	return resp.Body, nil
}

// serverError turns an error answer into an error: bad statements and
// readonly violations are vigil.ErrInvalid, server trouble ErrUnavailable.
func serverError(status int, msg []byte) error {
	text := strings.TrimSpace(string(msg))
	switch {
	case strings.HasPrefix(text, "Code: "):
		code := strings.TrimPrefix(text, "Code: ")
		if i := strings.IndexByte(code, ','); i > 0 {
			code = code[:i]
		}
		switch code {
		case "192", "193", "194", "195", "497", "516":
			// unknown user, wrong password, IP or access not allowed
			return fmt.Errorf("clickhouse: %s: %w", text, vigil.ErrUnauthorized)
		case "62", "47", "60", "81", "164", "43", "46", "386", "53", "70", "36", "42", "44", "48", "215", "184":
			// syntax, unknown identifier/table/database, readonly, bad
			// arguments or types, unknown function, aggregate misuse
			return fmt.Errorf("clickhouse: %s: %w", text, vigil.ErrInvalid)
		}
		return fmt.Errorf("clickhouse: %s: %w", text, vigil.ErrUnavailable)
	case status == http.StatusServiceUnavailable || status >= 500:
		return fmt.Errorf("clickhouse: HTTP %d: %s: %w", status, text, vigil.ErrUnavailable)
	default:
		return fmt.Errorf("clickhouse: HTTP %d: %s: %w", status, text, vigil.ErrInvalid)
	}
}

func (s *Store) exec(ctx context.Context, stmt string) error {
	body, err := s.request(ctx, stmt, nil, "", nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, body)
	return body.Close()
}

// insertTSV runs INSERT INTO table (cols) FORMAT TabSeparated with data.
func (s *Store) insertTSV(ctx context.Context, t *table, data []byte) error {
	stmt := "INSERT INTO " + s.qualified(t.name) + " (" + t.colList + ") FORMAT TabSeparated"
	body, err := s.request(ctx, stmt, bytes.NewReader(data), "text/tab-separated-values", nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, body)
	return body.Close()
}

// queryWithData runs a SELECT with one external table named name (one
// String column "v") holding values, one per line.
func (s *Store) queryWithData(ctx context.Context, stmt, name string, values []string) ([]string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile(name, name+".tsv")
	if err != nil {
		return nil, err
	}
	var line []byte
	for _, v := range values {
		line = appendTSVString(line[:0], v)
		line = append(line, '\n')
		fw.Write(line)
	}
	mw.Close()
	params := url.Values{}
	params.Set(name+"_structure", "v String")
	params.Set(name+"_format", "TabSeparated")
	body, err := s.request(ctx, stmt+"\nFORMAT TabSeparated", &buf, mw.FormDataContentType(), params)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	out, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: reading answer: %w", err)
	}
	var res []string
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if l != "" {
			res = append(res, unescapeTSV(l))
		}
	}
	return res, nil
}
