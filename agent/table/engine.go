package table

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil"
	sqlite "modernc.org/sqlite"
)

// moduleName is the one vtab module every table is created with; the table
// name passed by CREATE VIRTUAL TABLE selects the generator.
const moduleName = "vigil"

// Engine runs SQL over the virtual tables. It is safe for concurrent use.
type Engine struct {
	opts   Options
	log    *slog.Logger
	fs     *rootFS
	tables map[string]*tableDef
	order  []string // sorted table names
	db     *sql.DB

	mu sync.Mutex
	// sessions finds the session of the connection a query runs on. With as
	// many idle as open connections and no lifetime, database/sql drops a
	// connection only after a driver error; its entry then stays until
	// Close, a few hundred bytes.
	sessions  map[driver.Conn]*session
	byID      map[int64]*session
	nextID    atomic.Int64
	cursors   map[string]map[string]uint64 // consumer -> event table -> last id given
	consumers map[string]*sync.Mutex       // serialises QueryAs per consumer

	closed atomic.Bool
}

// session is the per-connection state the virtual tables of one connection
// read while a query runs on it.
type session struct {
	id int64

	// Set by Engine for the duration of one query.
	ctx      context.Context
	consumer string
	// events caches the first Rows() answer per event table within one
	// query so that several scans of a table see the same rows.
	events map[string]eventBatch
}

type eventBatch struct {
	rows []map[string]string
	last uint64
}

// Open builds an Engine with every table of this platform registered.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 2
	}
	e := &Engine{
		opts:      opts,
		log:       opts.Logger.With("component", "table"),
		fs:        newRootFS(opts.Root),
		tables:    map[string]*tableDef{},
		sessions:  map[driver.Conn]*session{},
		byID:      map[int64]*session{},
		cursors:   map[string]map[string]uint64{},
		consumers: map[string]*sync.Mutex{},
	}
	for _, t := range registry() {
		if _, dup := e.tables[t.schema.Name]; dup {
			return nil, fmt.Errorf("opening table engine: table %q registered twice", t.schema.Name)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("opening table engine: %w", err)
		}
		e.tables[t.schema.Name] = t
		e.order = append(e.order, t.schema.Name)
	}
	sort.Strings(e.order)

	// A driver of our own keeps the module off every other connection in the
	// process, and lets two Engines (different roots) live side by side.
	drv := &sqlite.Driver{}
	if err := drv.RegisterModule(moduleName, &module{e: e}); err != nil {
		return nil, fmt.Errorf("opening table engine: registering module: %w", err)
	}
	if err := registerFunctions(drv); err != nil {
		return nil, fmt.Errorf("opening table engine: %w", err)
	}
	if err := registerCollations(drv); err != nil {
		return nil, fmt.Errorf("opening table engine: %w", err)
	}
	e.db = sql.OpenDB(&connector{e: e, drv: drv})
	e.db.SetMaxOpenConns(opts.MaxConns)
	e.db.SetMaxIdleConns(opts.MaxConns)
	e.db.SetConnMaxLifetime(0)
	// Open one connection now so a broken setup fails here, not at the
	// first scheduled query.
	c, err := e.db.Conn(ctx)
	if err != nil {
		e.db.Close()
		return nil, fmt.Errorf("opening table engine: %w", err)
	}
	c.Close()
	return e, nil
}

// connector opens in-memory connections and creates every virtual table on
// them: modernc's vtab has no eponymous modules.
type connector struct {
	e   *Engine
	drv *sqlite.Driver
}

func (c *connector) Driver() driver.Driver { return c.drv }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(":memory:")
	if err != nil {
		return nil, fmt.Errorf("opening sqlite connection: %w", err)
	}
	s := &session{id: c.e.nextID.Add(1)}
	c.e.mu.Lock()
	c.e.byID[s.id] = s
	c.e.mu.Unlock()
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("sqlite connection cannot exec")
	}
	for _, name := range c.e.order {
		// Names come from our registry only, never from a query.
		stmt := fmt.Sprintf("CREATE VIRTUAL TABLE %q USING %s(%d)", name, moduleName, s.id)
		if _, err := ex.ExecContext(ctx, stmt, nil); err != nil {
			conn.Close()
			return nil, fmt.Errorf("creating virtual table %s: %w", name, err)
		}
	}
	for _, name := range c.e.order {
		for _, alias := range c.e.tables[name].aliases {
			stmt := fmt.Sprintf("CREATE VIEW %q AS SELECT * FROM %q", alias, name)
			if _, err := ex.ExecContext(ctx, stmt, nil); err != nil {
				conn.Close()
				return nil, fmt.Errorf("creating alias %s of %s: %w", alias, name, err)
			}
		}
	}
	c.e.mu.Lock()
	c.e.sessions[conn] = s
	c.e.mu.Unlock()
	return conn, nil
}

// Tables lists the schemas of every registered table, sorted by name.
func (e *Engine) Tables() []Schema {
	out := make([]Schema, 0, len(e.order))
	for _, n := range e.order {
		s := e.tables[n].schema
		s.Columns = append([]Column(nil), s.Columns...)
		out = append(out, s)
	}
	return out
}

// Query runs sql. Event tables return every buffered row.
func (e *Engine) Query(ctx context.Context, sql string) (Result, error) {
	return e.run(ctx, "", sql)
}

// QueryAs runs a scheduled query on behalf of consumer (the scheduled
// query's name): event tables then return only rows this consumer has not
// been given before. The consumer's cursor advances only if the query
// succeeds.
func (e *Engine) QueryAs(ctx context.Context, consumer, sql string) (Result, error) {
	if consumer == "" {
		return Result{}, fmt.Errorf("query as: empty consumer name: %w", vigil.ErrInvalid)
	}
	e.mu.Lock()
	m := e.consumers[consumer]
	if m == nil {
		m = &sync.Mutex{}
		e.consumers[consumer] = m
	}
	e.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	return e.run(ctx, consumer, sql)
}

func (e *Engine) run(ctx context.Context, consumer, query string) (Result, error) {
	if e.closed.Load() {
		return Result{}, fmt.Errorf("table engine is closed: %w", vigil.ErrUnavailable)
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("getting connection: %w", err)
	}
	defer conn.Close()
	var s *session
	if err := conn.Raw(func(dc any) error {
		e.mu.Lock()
		s = e.sessions[dc.(driver.Conn)]
		e.mu.Unlock()
		return nil
	}); err != nil {
		return Result{}, fmt.Errorf("getting connection: %w", err)
	}
	if s == nil {
		return Result{}, errors.New("table engine: connection has no session (opened outside the engine)")
	}
	s.ctx, s.consumer, s.events = ctx, consumer, nil
	defer func() { s.ctx, s.consumer, s.events = nil, "", nil }()

	res, err := collect(ctx, conn, query)
	if err != nil {
		return Result{}, err
	}
	if consumer != "" && len(s.events) > 0 {
		e.mu.Lock()
		cur := e.cursors[consumer]
		if cur == nil {
			cur = map[string]uint64{}
			e.cursors[consumer] = cur
		}
		for t, b := range s.events {
			if b.last > cur[t] {
				cur[t] = b.last
			}
		}
		e.mu.Unlock()
	}
	return res, nil
}

// ErrResultTooLarge is returned by a query whose result grew over the bound
// set with WithMaxResultBytes; reading stops there, so memory stays bounded.
var ErrResultTooLarge = errors.New("query result too large")

type maxResultKey struct{}

// WithMaxResultBytes bounds the results of queries run with the returned
// context to about n bytes of JSON (column names, values and quoting, as
// the result would be sent); n <= 0 means no bound.
func WithMaxResultBytes(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, maxResultKey{}, n)
}

// RowSize estimates the JSON size of one result row, {"col":"value",...},
// counting the escapes encoding/json writes (\n, \u003c, ...) at their
// longest so that the estimate does not fall short.
func RowSize(r map[string]string) int {
	n := 2
	for k, v := range r {
		n += jsonLen(k) + jsonLen(v) + 6
	}
	return n
}

func jsonLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			n += 5
		}
	}
	return n
}

func collect(ctx context.Context, conn *sql.Conn, query string) (Result, error) {
	limit, _ := ctx.Value(maxResultKey{}).(int)
	rows, err := conn.QueryContext(ctx, query)
	if err != nil {
		return Result{}, sqlError(ctx, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return Result{}, sqlError(ctx, err)
	}
	res := Result{Columns: cols, Rows: []map[string]string{}}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	size := 2 // []
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return Result{}, sqlError(ctx, err)
		}
		r := make(map[string]string, len(cols))
		for i, c := range cols {
			r[c] = renderResult(vals[i])
		}
		res.Rows = append(res.Rows, r)
		if limit > 0 {
			size += RowSize(r) + 1
			if size > limit {
				return Result{}, fmt.Errorf("%w: more than %d bytes after %d rows; add a LIMIT or select fewer columns", ErrResultTooLarge, limit, len(res.Rows))
			}
		}
	}
	if err := rows.Err(); err != nil {
		return Result{}, sqlError(ctx, err)
	}
	return res, nil
}

// renderResult formats a result value as osquery does: a double with 15
// significant digits (%g) and ".0" appended when that has no '.', even
// after an exponent ("1e+20.0"), as osquery's CastVisitor does.
func renderResult(v any) string {
	if f, ok := v.(float64); ok {
		s := strconv.FormatFloat(f, 'g', 15, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	return render(v)
}

// render formats a value as text; integral doubles lose their fraction so
// that a constraint "pid = 1.0" reaches generators as "1".
func render(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		return v
	case []byte:
		return string(v)
	case bool:
		if v {
			return "1"
		}
		return "0"
	default:
		return fmt.Sprint(v)
	}
}

// SQLError is an error reported by SQLite, with SQLite's own message (for
// example "no such table: foo").
type SQLError struct {
	Msg  string
	Code int
}

func (e *SQLError) Error() string { return e.Msg }

var sqliteMsg = regexp.MustCompile(`^(?s)[^:]*: (.*) \(\d+\)$`)

func sqlError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("query interrupted: %w", ctx.Err())
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		msg := se.Error()
		if m := sqliteMsg.FindStringSubmatch(msg); m != nil {
			msg = m[1]
		} else {
			msg = strings.TrimSpace(msg)
		}
		return &SQLError{Msg: msg, Code: se.Code()}
	}
	return err
}

// Close releases the engine's connections.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	err := e.db.Close()
	e.mu.Lock()
	e.sessions, e.byID = map[driver.Conn]*session{}, map[int64]*session{}
	e.mu.Unlock()
	return err
}

// sessionByID finds the session a virtual table was created for.
func (e *Engine) sessionByID(id int64) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byID[id]
}

// eventRows returns the rows of an event table the current query of s may
// see, remembering what it handed out so QueryAs can advance the cursor.
func (e *Engine) eventRows(s *session, table string) []map[string]string {
	if e.opts.Events == nil {
		return nil
	}
	if b, ok := s.events[table]; ok {
		return b.rows
	}
	var after uint64
	if s.consumer != "" {
		e.mu.Lock()
		after = e.cursors[s.consumer][table]
		e.mu.Unlock()
	}
	rows, last := e.opts.Events.Rows(table, after)
	if s.events == nil {
		s.events = map[string]eventBatch{}
	}
	s.events[table] = eventBatch{rows: rows, last: last}
	return rows
}
