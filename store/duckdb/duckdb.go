// Package duckdb is Vigil's default event store: one DuckDB file holding
// every event table of the schema and the raw results table. It implements
// store.Appender, store.Querier and store.Retainer; cmd/vigil wires it, and
// ingest, detect and web see it only through those interfaces.
//
// Writes go through DuckDB's Appender only. In one transaction on the
// single writer connection, a batch's ids are staged (Appender into a
// temporary table) and joined with the table to find those already stored;
// the new rows then go through the Appender straight into the table with
// seq numbered from the table's maximum. Appends are serialised, so seq
// values become visible in increasing order. Reads run on other
// connections, concurrently with writes (DuckDB's MVCC), and see a batch
// whole or not at all.
//
// Only one process may open a DuckDB file read-write at a time.
package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// Options configures Open.
type Options struct {
	// Path of the database file; created when missing.
	Path string
	// Logger; nil discards.
	Logger *slog.Logger
	// RowLimit bounds the rows Query returns; 0 means store.DefaultRowLimit.
	RowLimit int
	// Now is the clock for ingested_at; nil means time.Now.
	Now func() time.Time
	// MaxResultViews caps the per-query result views (results_<query>);
	// 0 means store.DefaultMaxResultViews.
	MaxResultViews int
	// MemoryLimit caps DuckDB's own memory (its buffer pool caches table
	// blocks up to it; bigger query intermediates spill to PATH.tmp), in
	// DuckDB's notation, e.g. "1GB"; "" means DefaultMemoryLimit. DuckDB's
	// own default, 80% of RAM, would make the server grow with the
	// database.
	MemoryLimit string
	// CheckpointThreshold is the size of DuckDB's own write-ahead log at
	// which it checkpoints (moves the logged rows into the database file),
	// in DuckDB's notation; "" means DefaultCheckpointThreshold.
	CheckpointThreshold string
}

// DefaultMemoryLimit is DuckDB's memory_limit when Options.MemoryLimit is
// empty: enough for appends and for detection and console queries over
// recent data (DuckDB spills what does not fit to PATH.tmp), small enough
// that the server's memory stays flat as the database grows. DuckDB's
// buffer pool fills up to the limit and stays there, so the limit sets
// most of the server's resident memory: in BenchmarkIngestServerRSS the
// server peaked at 494 MB over 1M events and 603 MB over 10M (with 512MB
// here: 530 MB and 846 MB).
const DefaultMemoryLimit = "256MB"

// DefaultCheckpointThreshold replaces DuckDB's 16MB. A checkpoint rewrites
// the table's last, partly filled row group (122,880 rows) whole, so with
// ingest's batches of a few thousand rows a small threshold writes each
// row several times: at 16MB appends cost about twice the CPU they do at
// 128MB (BenchmarkAppendBatches). The logged rows wait in DuckDB's memory,
// within MemoryLimit, until the checkpoint; a restart replays at most this
// much.
const DefaultCheckpointThreshold = "128MB"

// Store is a DuckDB event store. It is safe for concurrent use.
type Store struct {
	db       *sql.DB
	conn     *sql.Conn // the single writer connection; owns the staging tables
	path     string
	log      *slog.Logger
	rowLimit int
	now      func() time.Time
	tables   map[string]*table // by name: every event table and the results table
	order    []*table          // creation order
	views    *store.ResultViews
	from     int // schema version of the file at open; 0 when new

	mu     sync.Mutex // serialises writes (Append, DeleteBefore) on conn
	closed bool
}

var (
	_ store.Appender = (*Store)(nil)
	_ store.Querier  = (*Store)(nil)
	_ store.Retainer = (*Store)(nil)
)

// metaTable records the schema version the file was last migrated to.
const metaTable = "vigil_meta"

// Open opens (creating when missing) the database at opts.Path, creates or
// migrates every table of the schema and records schema.Version.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("duckdb: open: empty path: %w", vigil.ErrInvalid)
	}
	if strings.ContainsAny(opts.Path, "?#") {
		return nil, fmt.Errorf("duckdb: open %q: path may not contain ? or #: %w", opts.Path, vigil.ErrInvalid)
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

	// Least privilege for the people's queries that run here: no file or
	// network access from SQL (read_csv, COPY, ATTACH, httpfs), no extension
	// loading, and no changing that from a query.
	cfg := url.Values{}
	cfg.Set("enable_external_access", "false")
	cfg.Set("autoinstall_known_extensions", "false")
	cfg.Set("autoload_known_extensions", "false")
	cfg.Set("lock_configuration", "true")
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	cfg.Set("memory_limit", opts.MemoryLimit)
	if opts.CheckpointThreshold == "" {
		opts.CheckpointThreshold = DefaultCheckpointThreshold
	}
	cfg.Set("checkpoint_threshold", opts.CheckpointThreshold)
	dsn := opts.Path + "?" + cfg.Encode()
	if _, err := url.Parse(dsn); err != nil {
		return nil, fmt.Errorf("duckdb: open %q: unusable path: %w", opts.Path, vigil.ErrInvalid)
	}
	connector, err := duckdb.NewConnector(dsn, nil)
	if err != nil {
		if strings.Contains(err.Error(), "Could not set lock") {
			return nil, fmt.Errorf("duckdb: open %s: another process has the file open (only one process may open an event store; is another vigil server running?): %w: %w",
				opts.Path, vigil.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("duckdb: open %s: %w", opts.Path, err)
	}
	db := sql.OpenDB(connector)
	// Readers come and go (detection, the console); keep a few
	// connections instead of making one per query.
	db.SetMaxIdleConns(8)
	s := &Store{
		db:       db,
		path:     opts.Path,
		log:      opts.Logger.With("component", "store.duckdb"),
		rowLimit: opts.RowLimit,
		now:      opts.Now,
		tables:   map[string]*table{},
	}
	s.views = store.NewResultViews(opts.MaxResultViews, s.log)
	if err := s.init(ctx); err != nil {
		if s.conn != nil {
			s.conn.Close()
		}
		db.Close()
		return nil, fmt.Errorf("duckdb: open %s: %w", opts.Path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	s.conn = conn
	if err := s.migrate(ctx); err != nil {
		return err
	}
	// After a crash DuckDB replays its own WAL at open; checkpointing now
	// moves those rows into the main file before ingest starts, so that
	// the first append does not pay for it. A server that is killed again
	// and again (the kill -9 fault test) otherwise never lives long
	// enough for that first append and makes no progress.
	if _, err := conn.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpointing: %w", err)
	}
	for _, t := range s.order {
		t.prepare()
	}
	if err := s.initViews(ctx, s.from); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `CREATE OR REPLACE TEMP TABLE `+quoteIdent(idsTable)+` ("event_id" VARCHAR)`); err != nil {
		return fmt.Errorf("creating the batch id table: %w", err)
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+metaTable+` (key VARCHAR PRIMARY KEY, value VARCHAR)`); err != nil {
		return fmt.Errorf("creating %s: %w", metaTable, err)
	}
	var stored sql.NullString
	err := s.conn.QueryRowContext(ctx, `SELECT value FROM `+metaTable+` WHERE key = 'schema_version'`).Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if stored.Valid {
		var v int
		if _, err := fmt.Sscan(stored.String, &v); err != nil {
			return fmt.Errorf("schema version %q in %s: %w", stored.String, metaTable, vigil.ErrInvalid)
		}
		if v > schema.Version {
			return fmt.Errorf("file has schema version %d, this binary knows up to %d: upgrade vigil: %w", v, schema.Version, vigil.ErrConflict)
		}
		if v < schema.Version {
			s.log.Info("migrating schema", "from", v, "to", schema.Version)
		}
		s.from = v
	}

	defs := make([]struct {
		name string
		cols []schema.Column
	}, 0, len(schema.Tables())+1)
	for _, t := range schema.Tables() {
		defs = append(defs, struct {
			name string
			cols []schema.Column
		}{t.Name, t.AllColumns()})
	}
	defs = append(defs, struct {
		name string
		cols []schema.Column
	}{schema.ResultsTable, append(append([]schema.Column{}, schema.Common...), schema.ResultsColumns...)})

	for _, d := range defs {
		t := newTable(d.name, d.cols)
		if err := t.ensure(ctx, s.conn); err != nil {
			return err
		}
		s.tables[t.name] = t
		s.order = append(s.order, t)
	}
	if _, err := s.conn.ExecContext(ctx, `INSERT OR REPLACE INTO `+metaTable+` VALUES ('schema_version', ?)`, fmt.Sprint(schema.Version)); err != nil {
		return fmt.Errorf("recording schema version: %w", err)
	}
	return nil
}

// Dialect reports store.DuckDB.
func (s *Store) Dialect() store.Dialect { return store.DuckDB }

// Close closes the store. Appends in progress finish first.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.conn.Close()
	if err2 := s.db.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return fmt.Errorf("duckdb: closing %s: %w", s.path, err)
	}
	return nil
}

// Stats reports the file size (database and its WAL), the rows of each
// table and the result views.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	st := store.Stats{Rows: map[string]int64{}, ResultViews: s.views.Stats()}
	for _, p := range []string{s.path, s.path + ".wal"} {
		if fi, err := os.Stat(p); err == nil {
			st.SizeBytes += fi.Size()
		}
	}
	for _, t := range s.order {
		var n int64
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+t.quoted).Scan(&n); err != nil {
			return st, fmt.Errorf("duckdb: counting %s: %w", t.name, err)
		}
		st.Rows[t.name] = n
	}
	return st, nil
}

// DeleteBefore deletes rows whose event_time is before cutoff from every
// table and returns how many it deleted.
func (s *Store) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("duckdb: delete: store closed: %w", vigil.ErrUnavailable)
	}
	tx, err := s.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("duckdb: delete: %w", err)
	}
	defer tx.Rollback()
	var total int64
	for _, t := range s.order {
		// seq must keep increasing after the newest rows are deleted and
		// the file reopened, or detection watermarks would skip new rows.
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO `+metaTable+` VALUES (?, ?)`, seqKey(t.name), fmt.Sprint(t.seq)); err != nil {
			return 0, fmt.Errorf("duckdb: delete: recording seq of %s: %w", t.name, err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM `+t.quoted+` WHERE event_time < CAST(? AS TIMESTAMP)`, cutoff.UTC())
		if err != nil {
			return 0, fmt.Errorf("duckdb: deleting from %s: %w", t.name, err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("duckdb: delete: committing: %w", err)
	}
	s.log.Info("retention", "cutoff", cutoff, "deleted", total)
	return total, nil
}

// seqKey is the vigil_meta key of a table's highest seq ever assigned.
func seqKey(table string) string { return "seq:" + table }

// quoteIdent quotes an identifier. Identifiers come only from the schema;
// quoting is belt and braces.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
