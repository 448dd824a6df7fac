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
// placeholders to $n. Only the DDL differs (pgMigrations).

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

// pgMigrations are migrations for PostgreSQL, version for version the
// same schema as migrations (BIGINT times, BYTEA hashes, identity ids).
var pgMigrations = []migration{
	{1, "initial", `
CREATE TABLE hosts (
	id            TEXT PRIMARY KEY,
	identifier    TEXT NOT NULL,
	uuid          TEXT NOT NULL DEFAULT '',
	hostname      TEXT NOT NULL DEFAULT '',
	platform      TEXT NOT NULL DEFAULT '',
	os_version    TEXT NOT NULL DEFAULT '',
	agent_name    TEXT NOT NULL DEFAULT '',
	agent_version TEXT NOT NULL DEFAULT '',
	enrolled_at   BIGINT NOT NULL,
	last_seen     BIGINT NOT NULL DEFAULT 0,
	long_poll     INTEGER NOT NULL DEFAULT 0,
	remote_addr   TEXT NOT NULL DEFAULT '',
	details_json  TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX hosts_identity ON hosts (identifier, uuid);
CREATE INDEX hosts_hostname ON hosts (hostname);

CREATE TABLE node_keys (
	hash       BYTEA PRIMARY KEY,
	host_id    TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
	created_at BIGINT NOT NULL,
	revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX node_keys_host ON node_keys (host_id);

CREATE TABLE enroll_secrets (
	id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	hash       BYTEA NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL DEFAULT 0,
	revoked_at BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE campaigns (
	id           TEXT PRIMARY KEY,
	sql          TEXT NOT NULL,
	actor        TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	deadline     BIGINT NOT NULL,
	completed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX campaigns_open ON campaigns (completed_at, deadline);

CREATE TABLE campaign_hosts (
	campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
	host_id     TEXT NOT NULL,
	hostname    TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL,
	error       TEXT NOT NULL DEFAULT '',
	rows_json   TEXT,
	row_count   INTEGER NOT NULL DEFAULT 0,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (campaign_id, host_id)
);
CREATE INDEX campaign_hosts_by_host ON campaign_hosts (host_id, status);

CREATE TABLE tokens (
	id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
	hash         BYTEA NOT NULL UNIQUE,
	created_at   BIGINT NOT NULL,
	last_used_at BIGINT NOT NULL DEFAULT 0,
	revoked_at   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit_log (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time        BIGINT NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	target      TEXT NOT NULL DEFAULT '',
	source      TEXT NOT NULL DEFAULT '',
	detail_json TEXT NOT NULL DEFAULT '{}'
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE alerts (
	id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	rule_id      TEXT NOT NULL,
	rule_title   TEXT NOT NULL DEFAULT '',
	level        TEXT NOT NULL DEFAULT '',
	host_id      TEXT NOT NULL DEFAULT '',
	hostname     TEXT NOT NULL DEFAULT '',
	event_id     TEXT NOT NULL,
	event_table  TEXT NOT NULL DEFAULT '',
	event_time   BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	status       TEXT NOT NULL,
	assignee     TEXT NOT NULL DEFAULT '',
	close_reason TEXT NOT NULL DEFAULT '',
	fields_json  TEXT NOT NULL DEFAULT '{}',
	UNIQUE (rule_id, event_id)
);
CREATE INDEX alerts_created ON alerts (created_at, id);
CREATE INDEX alerts_status ON alerts (status, created_at);
CREATE INDEX alerts_host ON alerts (host_id, created_at);

CREATE TABLE watermarks (
	rule_id    TEXT NOT NULL,
	table_name TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (rule_id, table_name)
);
`},
	{2, "carves", `
CREATE TABLE carves (
	id           TEXT PRIMARY KEY,
	session_hash BYTEA NOT NULL UNIQUE,
	host_id      TEXT NOT NULL,
	carve_id     TEXT NOT NULL,
	request_id   TEXT NOT NULL DEFAULT '',
	block_count  INTEGER NOT NULL,
	block_size   INTEGER NOT NULL,
	carve_size   BIGINT NOT NULL,
	created_at   BIGINT NOT NULL,
	completed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX carves_created ON carves (created_at);

CREATE TABLE carve_blocks (
	carve_id TEXT NOT NULL REFERENCES carves (id) ON DELETE CASCADE,
	block_id INTEGER NOT NULL,
	data     BYTEA NOT NULL,
	PRIMARY KEY (carve_id, block_id)
);
`},
	{3, "config versions and labels", `
CREATE TABLE config_versions (
	version    INTEGER PRIMARY KEY,
	doc        TEXT NOT NULL,
	actor      TEXT NOT NULL,
	comment    TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);

CREATE TABLE host_labels (
	host_id TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
	label   TEXT NOT NULL,
	PRIMARY KEY (host_id, label)
);
CREATE INDEX host_labels_label ON host_labels (label);
`},
	{4, "campaign completion index", `
CREATE INDEX campaign_hosts_by_status ON campaign_hosts (campaign_id, status);
`},
	{5, "alert lifecycle: dedupe, suppressions, dead letters", lifecyclePostgres}, // state/lifecycle.go
	{6, "alert list indexes", alertListIndexes},                                   // state/alerts.go
}
