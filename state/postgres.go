package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// The state's SQL is written once, with SQLite's ? placeholders and
// portable constructs; for PostgreSQL a thin driver wrapper rewrites the
// placeholders to $n. The DDL is written once too, with tokens for what
// differs (migrationsFor).

type pgBackend struct {
	cfg    *pgx.ConnConfig // for the LISTEN connection
	origin string          // this DB's id in announcements, to skip our own
	ann    *announcer
}

// announcer gathers announcements for announceDelay and sends each
// topic's ids in as few notifications as fit: a live query to thousands
// of hosts brings thousands of answers within a second, and a
// notification per answer queued them on the pool's connections.
type announcer struct {
	mu      sync.Mutex
	pending map[string][]string // topic -> ids
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

const announceDelay = 2 * time.Millisecond

func openPostgres(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("state: parsing PostgreSQL URL: %w", err)
	}
	pool := sql.OpenDB(rebindConnector{stdlib.GetConnector(*cfg)})
	pool.SetMaxOpenConns(16)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{w: pool, r: pool, path: dsn, dialect: Postgres, pg: &pgBackend{cfg: cfg, origin: NewID()[:12]}, logger: logger, now: time.Now}
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("state: connecting to %s: %w", db.redactedPath(), err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	db.startClaimer()
	db.pg.ann = &announcer{pending: map[string][]string{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go db.announceLoop()
	return db, nil
}

func (db *DB) announceLoop() {
	a := db.pg.ann
	defer close(a.done)
	for {
		select {
		case <-a.kick:
		case <-a.stop:
			db.flushAnnouncements()
			return
		}
		select {
		case <-time.After(announceDelay):
		case <-a.stop:
		}
		db.flushAnnouncements()
	}
}

func (db *DB) stopAnnouncer() {
	if db.pg == nil || db.pg.ann == nil {
		return
	}
	close(db.pg.ann.stop)
	<-db.pg.ann.done
}

func (db *DB) flushAnnouncements() {
	a := db.pg.ann
	a.mu.Lock()
	pending := a.pending
	a.pending = map[string][]string{}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for topic, ids := range pending {
		if err := db.notify(ctx, topic, ids); err != nil {
			// Replicas re-check everything when they reconnect, and sweep
			// campaigns; a lost announcement delays, never loses, an answer.
			db.logger.Error("announcing to replicas", "topic", topic, "ids", len(ids), "err", err)
		}
	}
}

type rebindConnector struct{ driver.Connector }

func (c rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*stdlib.Conn)
	if !ok {
		return conn, nil
	}
	return &rebindConn{sc}, nil
}

// rebindConn is pgx's database/sql connection with ? placeholders turned
// into $n; every other method is pgx's own.
type rebindConn struct{ *stdlib.Conn }

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(rebind(query))
}

func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(query))
}

func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(query), args)
}

var rebound sync.Map // query -> rewritten query

// rebind rewrites ? placeholders to $1, $2, ... outside quoted strings,
// identifiers and dollar-quoted bodies.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	if v, ok := rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			b.WriteByte(c)
		case c == '\'' || c == '"':
			quote = c
			b.WriteByte(c)
		case c == '$' && strings.HasPrefix(q[i:], "$$"):
			end := strings.Index(q[i+2:], "$$")
			if end < 0 {
				b.WriteString(q[i:])
				i = len(q)
				continue
			}
			b.WriteString(q[i : i+2+end+2])
			i += end + 3
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	rebound.Store(q, out)
	return out
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Topics of Announce and Listen.
const (
	TopicHost     = "host"     // ids: hosts with a new pending live query
	TopicCampaign = "campaign" // ids: campaigns with a new answer, timeout or completion
)

const notifyChannel = "vigil_state"

// Shared reports whether other server replicas may share this state
// (PostgreSQL), so that changes must be announced to them.
func (db *DB) Shared() bool { return db.pg != nil }

// Announce tells the other replicas sharing this state that something
// changed: TopicHost with host ids that have a new pending live query,
// TopicCampaign with campaign ids that got an answer, a timeout or
// completed. It is a no-op for SQLite, where there is one server.
// Announcements are sent within announceDelay, gathered, in as few
// notifications as fit PostgreSQL's payload limit; a failure is logged.
func (db *DB) Announce(ctx context.Context, topic string, ids ...string) error {
	if db.pg == nil || len(ids) == 0 {
		return nil
	}
	a := db.pg.ann
	a.mu.Lock()
	a.pending[topic] = append(a.pending[topic], ids...)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

func (db *DB) notify(ctx context.Context, topic string, ids []string) error {
	prefix := db.pg.origin + ":" + topic + ":"
	const maxPayload = 7000 // PostgreSQL's limit is 8000 bytes
	for len(ids) > 0 {
		n, size := 0, len(prefix)
		for n < len(ids) && (n == 0 || size+len(ids[n])+1 <= maxPayload) {
			size += len(ids[n]) + 1
			n++
		}
		payload := prefix + strings.Join(ids[:n], ",")
		if _, err := db.w.ExecContext(ctx, `SELECT pg_notify(?, ?)`, notifyChannel, payload); err != nil {
			return fmt.Errorf("state: announcing %s: %w", topic, err)
		}
		ids = ids[n:]
	}
	return nil
}

// Listen calls fn for every announcement of the other replicas until ctx
// ends, on one dedicated connection, reconnecting after failures. After
// each (re)connection it calls fn("", "") first: announcements may have
// been missed, so the caller should re-check whatever it waits for. For
// SQLite it returns at once.
func (db *DB) Listen(ctx context.Context, fn func(topic, id string)) error {
	if db.pg == nil {
		return nil
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		db.logger.Warn("lost the notification connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

func (db *DB) listenOnce(ctx context.Context, fn func(topic, id string)) error {
	conn, err := pgx.ConnectConfig(ctx, db.pg.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	fn("", "")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		origin, rest, _ := strings.Cut(n.Payload, ":")
		if origin == db.pg.origin {
			continue // our own: already handled locally
		}
		topic, ids, _ := strings.Cut(rest, ":")
		for _, id := range strings.Split(ids, ",") {
			if id != "" {
				fn(topic, id)
			}
		}
	}
}
