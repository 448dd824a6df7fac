// Package state owns the control plane's durable state: enrolled hosts and
// their node keys and labels, enroll secrets, live-query campaigns with
// their per-host statuses and results, file carves, fleet configuration
// versions, people's tokens and roles, the append-only audit log, alerts
// and detection watermarks. The default backend is an embedded SQLite file
// (modernc.org/sqlite, pure Go, WAL mode), next to which live-query answers
// are journaled first (PATH-answers/, journal.go); PostgreSQL (pgx) serves several
// server replicas sharing one state, which tell each other about changes
// with LISTEN/NOTIFY (Announce, Listen). Only server-side packages
// (control, web, detect, cmd/vigil) import it; agents never do.
//
// Secrets (node keys, enroll secrets, tokens) are never stored: only their
// SHA-256 hashes, looked up by hash and then compared in constant time.
package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is the control-plane state. It is safe for concurrent use.
//
// With SQLite (the default, one server) writes go through one connection
// (SQLite has one writer anyway, and this avoids SQLITE_BUSY between our
// own goroutines) and reads through a pool that WAL mode lets run beside
// the writer. With PostgreSQL (several server replicas) both are one pool,
// and replicas tell each other about new live queries and answers with
// LISTEN/NOTIFY (see Announce and Listen).
type DB struct {
	w, r    *sql.DB
	path    string
	dialect string // "sqlite" or "postgres"
	pg      *pgBackend
	logger  *slog.Logger
	now     func() time.Time

	stmts   sync.Map // stmtKey -> *sql.Stmt, for the hot statements
	claims  *claimer
	results *resultWriter
	journal *journal // SQLite: live-query answers (journal.go)
	keys    keyCache
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepared returns a statement prepared once per pool: agents' requests
// run a few statements thousands of times a second, and parsing the SQL
// each time was the largest cost of authenticating a node key.
func (db *DB) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{pool, query}
	if s, ok := db.stmts.Load(k); ok {
		return s.(*sql.Stmt), nil
	}
	s, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := db.stmts.LoadOrStore(k, s); loaded {
		s.Close()
		return prev.(*sql.Stmt), nil
	}
	return s, nil
}

// Dialects of DB.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// writeCacheKiB is the page cache of the one writing connection. With
// SQLite's default (2,000 KiB) a batch of 1,000 live-query answers
// dirtied more pages than fit: SQLite spilled them to the WAL mid-
// transaction and, at commit, read and rewrote the later frames'
// checksums (a third of the writer's system calls in a trace of a live
// query to 10,000 hosts). BenchmarkLiveQueryState10k against
// ...DefaultCache measures the difference.
var writeCacheKiB = 16 << 10

// Open opens the state and applies any pending migrations. path is a
// SQLite file (created if needed) or a PostgreSQL URL
// (postgres://user:pass@host:5432/db?sslmode=...) for replicas sharing
// one state.
func Open(ctx context.Context, path string, logger *slog.Logger) (*DB, error) {
	return open(ctx, path, logger, true)
}

// open is Open; without journal, live-query answers go straight to SQLite
// (tests open a second handle on one file that way).
func open(ctx context.Context, path string, logger *slog.Logger, journal bool) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger = logger.With("component", "state")
	if strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://") {
		return openPostgres(ctx, path, logger)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writeCacheKiB))
	// Statement journals (a multi-row INSERT of a campaign's targets opens
	// one) and temporary indexes in memory, not in files: the sub-journal's
	// writes were a quarter of creating a 10,000-host campaign.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("state: opening %s: %w", path, err)
	}
	db := &DB{w: w, path: path, dialect: SQLite, logger: logger, now: time.Now}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(10000)")
	rq.Add("_pragma", "foreign_keys(1)")
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("state: opening %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	db.r = r
	if journal && path != ":memory:" {
		if err := db.openJournal(ctx, path+"-answers"); err != nil {
			r.Close()
			w.Close()
			return nil, err
		}
	}
	db.startClaimer()
	return db, nil
}

// Dialect is SQLite or Postgres.
func (db *DB) Dialect() string { return db.dialect }

// Close closes the database.
func (db *DB) Close() error {
	jerr := db.closeJournal()
	db.stopClaimer()
	db.stopAnnouncer()
	db.stmts.Range(func(k, s any) bool {
		s.(*sql.Stmt).Close()
		return true
	})
	if db.r == db.w {
		return errors.Join(jerr, db.w.Close())
	}
	return errors.Join(jerr, db.r.Close(), db.w.Close())
}

// Path is the file (or URL) the state lives in.
func (db *DB) Path() string { return db.path }

// SetClock replaces the clock used for times the state assigns itself
// (created_at and the like); tests use it.
func (db *DB) SetClock(now func() time.Time) { db.now = now }

// tx runs fn in a write transaction.
func (db *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Times are stored as Unix nanoseconds, 0 meaning unset: they sort as
// integers, and the same columns work unchanged in PostgreSQL's BIGINT.
func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromTS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// NewID returns a random 128-bit id in hex, used for hosts and campaigns.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("state: crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrationsFor renders migrations for a dialect. The schema is written
// once; the tokens stand for what differs: times and counters are
// INTEGER in SQLite and BIGINT in PostgreSQL, hashes BLOB or BYTEA, ids
// SQLite rowids or PostgreSQL identities, and the audit log's
// append-only guard is a trigger in either's own language.
func migrationsFor(dialect string) []migration {
	r := sqliteDDL
	if dialect == Postgres {
		r = postgresDDL
	}
	out := make([]migration, len(migrations))
	for i, m := range migrations {
		out[i] = migration{version: m.version, name: m.name, sql: r.Replace(m.sql)}
	}
	return out
}

var sqliteDDL = strings.NewReplacer(
	"{{BIGINT}}", "INTEGER",
	"{{BLOB}}", "BLOB",
	"{{ROWID}}", "INTEGER PRIMARY KEY",
	"{{SERIAL}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
	"{{AUDIT_ID}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
	"{{AUDIT_APPEND_ONLY}}", `CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;`,
)

var postgresDDL = strings.NewReplacer(
	"{{BIGINT}}", "BIGINT",
	"{{BLOB}}", "BYTEA",
	"{{ROWID}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
	"{{SERIAL}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
	"{{AUDIT_ID}}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	"{{AUDIT_APPEND_ONLY}}", `CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();`,
)

func (db *DB) migrate(ctx context.Context) error {
	list := migrationsFor(db.dialect)
	// Each step runs in a transaction that re-reads the version, under an
	// advisory lock on PostgreSQL, so replicas starting together migrate
	// once.
	step := func(fn func(tx *sql.Tx, current int) error) error {
		return db.tx(ctx, func(tx *sql.Tx) error {
			if db.dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7415001)`); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
				version INTEGER PRIMARY KEY,
				name TEXT NOT NULL,
				applied_at BIGINT NOT NULL)`); err != nil {
				return fmt.Errorf("creating migrations table: %w", err)
			}
			var current int
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM migrations`).Scan(&current); err != nil {
				return fmt.Errorf("reading schema version: %w", err)
			}
			return fn(tx, current)
		})
	}
	for _, m := range list {
		applied := false
		err := step(func(tx *sql.Tx, current int) error {
			if current > len(list) {
				return fmt.Errorf("%s has schema version %d, newer than this binary knows (%d); run a newer vigil", db.redactedPath(), current, len(list))
			}
			if current >= m.version {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("applying migration %d (%s): %w", m.version, m.name, err)
			}
			applied = true
			_, err := tx.ExecContext(ctx, `INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, ts(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("state: %w", err)
		}
		if applied {
			db.logger.Info("applied migration", "version", m.version, "name", m.name)
		}
	}
	return nil
}

// redactedPath is Path without a password.
func (db *DB) redactedPath() string {
	if u, err := url.Parse(db.path); err == nil && u.User != nil {
		return u.Redacted()
	}
	return db.path
}

// migrations, in order; version i+1 is migrations[i], written once for
// both dialects with the tokens of migrationsFor. Never edit one that has
// shipped (what it renders to, in either dialect): append a new one.
var migrations = []migration{
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
	enrolled_at   {{BIGINT}} NOT NULL,
	last_seen     {{BIGINT}} NOT NULL DEFAULT 0,
	long_poll     INTEGER NOT NULL DEFAULT 0,
	remote_addr   TEXT NOT NULL DEFAULT '',
	details_json  TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX hosts_identity ON hosts (identifier, uuid);
CREATE INDEX hosts_hostname ON hosts (hostname);

CREATE TABLE node_keys (
	hash       {{BLOB}} PRIMARY KEY,
	host_id    TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
	created_at {{BIGINT}} NOT NULL,
	revoked_at {{BIGINT}} NOT NULL DEFAULT 0
);
CREATE INDEX node_keys_host ON node_keys (host_id);

CREATE TABLE enroll_secrets (
	id         {{ROWID}},
	name       TEXT NOT NULL UNIQUE,
	hash       {{BLOB}} NOT NULL,
	created_at {{BIGINT}} NOT NULL,
	expires_at {{BIGINT}} NOT NULL DEFAULT 0,
	revoked_at {{BIGINT}} NOT NULL DEFAULT 0
);

CREATE TABLE campaigns (
	id           TEXT PRIMARY KEY,
	sql          TEXT NOT NULL,
	actor        TEXT NOT NULL,
	created_at   {{BIGINT}} NOT NULL,
	deadline     {{BIGINT}} NOT NULL,
	completed_at {{BIGINT}} NOT NULL DEFAULT 0
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
	updated_at  {{BIGINT}} NOT NULL,
	PRIMARY KEY (campaign_id, host_id)
);
CREATE INDEX campaign_hosts_by_host ON campaign_hosts (host_id, status);

CREATE TABLE tokens (
	id           {{ROWID}},
	name         TEXT NOT NULL,
	role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
	hash         {{BLOB}} NOT NULL UNIQUE,
	created_at   {{BIGINT}} NOT NULL,
	last_used_at {{BIGINT}} NOT NULL DEFAULT 0,
	revoked_at   {{BIGINT}} NOT NULL DEFAULT 0
);

CREATE TABLE audit_log (
	id          {{AUDIT_ID}},
	time        {{BIGINT}} NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	target      TEXT NOT NULL DEFAULT '',
	source      TEXT NOT NULL DEFAULT '',
	detail_json TEXT NOT NULL DEFAULT '{}'
);
{{AUDIT_APPEND_ONLY}}

CREATE TABLE alerts (
	id           {{SERIAL}},
	rule_id      TEXT NOT NULL,
	rule_title   TEXT NOT NULL DEFAULT '',
	level        TEXT NOT NULL DEFAULT '',
	host_id      TEXT NOT NULL DEFAULT '',
	hostname     TEXT NOT NULL DEFAULT '',
	event_id     TEXT NOT NULL,
	event_table  TEXT NOT NULL DEFAULT '',
	event_time   {{BIGINT}} NOT NULL DEFAULT 0,
	created_at   {{BIGINT}} NOT NULL,
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
	seq        {{BIGINT}} NOT NULL,
	updated_at {{BIGINT}} NOT NULL,
	PRIMARY KEY (rule_id, table_name)
);
`},
	{2, "carves", `
CREATE TABLE carves (
	id           TEXT PRIMARY KEY,
	session_hash {{BLOB}} NOT NULL UNIQUE,
	host_id      TEXT NOT NULL,
	carve_id     TEXT NOT NULL,
	request_id   TEXT NOT NULL DEFAULT '',
	block_count  INTEGER NOT NULL,
	block_size   INTEGER NOT NULL,
	carve_size   {{BIGINT}} NOT NULL,
	created_at   {{BIGINT}} NOT NULL,
	completed_at {{BIGINT}} NOT NULL DEFAULT 0
);
CREATE INDEX carves_created ON carves (created_at);

CREATE TABLE carve_blocks (
	carve_id TEXT NOT NULL REFERENCES carves (id) ON DELETE CASCADE,
	block_id INTEGER NOT NULL,
	data     {{BLOB}} NOT NULL,
	PRIMARY KEY (carve_id, block_id)
);
`},
	{3, "config versions and labels", `
CREATE TABLE config_versions (
	version    INTEGER PRIMARY KEY,
	doc        TEXT NOT NULL,
	actor      TEXT NOT NULL,
	comment    TEXT NOT NULL DEFAULT '',
	created_at {{BIGINT}} NOT NULL
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
	{5, "alert lifecycle: dedupe, suppressions, dead letters", lifecycleDDL}, // state/lifecycle.go
	{6, "alert list indexes", alertListIndexes},                              // state/alerts.go
	{7, "campaign result column order", `
ALTER TABLE campaign_hosts ADD COLUMN columns_json TEXT;
`},
}
