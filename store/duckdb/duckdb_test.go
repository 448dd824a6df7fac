package duckdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store/duckdb"
	"github.com/vigilhq/vigil/store/storetest"
)

func open(t testing.TB, opts duckdb.Options) *duckdb.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "events.duckdb")
	}
	s, err := duckdb.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return open(t, duckdb.Options{})
	})
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

func events(host string, from, n int) vigil.Batch {
	return storetest.Events(host, from, n, t0, time.Millisecond)
}

func TestReopenKeepsDataAndSeq(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	ctx := context.Background()
	s, err := duckdb.Open(ctx, duckdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, events("h", 0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, duckdb.Options{Path: path})
	r, err := s.Query(ctx, "SELECT count(*), max(seq), min(event_time) FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(100) || r.Rows[0][1] != int64(100) {
		t.Fatalf("after reopen: count, max(seq) = %v, %v; want 100, 100", r.Rows[0][0], r.Rows[0][1])
	}
	// Microseconds survive (DuckDB TIMESTAMP precision).
	if got := r.Rows[0][2].(time.Time); !got.Equal(t0) {
		t.Errorf("min(event_time) = %v, want %v", got, t0)
	}
	// Replay after reopen is still deduplicated and seq continues.
	if err := s.Append(ctx, events("h", 50, 100)); err != nil {
		t.Fatal(err)
	}
	r, err = s.Query(ctx, "SELECT count(*), max(seq), min(seq) FILTER (WHERE event_id = 'h-100') FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(150) || r.Rows[0][1] != int64(150) || r.Rows[0][2] != int64(101) {
		t.Fatalf("after replay: %v; want 150 rows, max seq 150, h-100 at seq 101", r.Rows[0])
	}
	r, err = s.Query(ctx, "SELECT value FROM vigil_meta WHERE key = 'schema_version'")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != fmt.Sprint(schema.Version) {
		t.Errorf("recorded schema version %v, want %d", r.Rows, schema.Version)
	}
}

func TestOpenRejectsBadPath(t *testing.T) {
	if _, err := duckdb.Open(context.Background(), duckdb.Options{}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("empty path: %v, want ErrInvalid", err)
	}
	if _, err := duckdb.Open(context.Background(), duckdb.Options{Path: filepath.Join(t.TempDir(), "x?y")}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("path with ?: %v, want ErrInvalid", err)
	}
}

func TestRowLimit(t *testing.T) {
	s := open(t, duckdb.Options{RowLimit: 10})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 25)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT seq FROM process_creation ORDER BY seq DESC")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 10 || !r.Truncated {
		t.Fatalf("got %d rows, truncated %v; want 10, true", len(r.Rows), r.Truncated)
	}
	// The order of the statement survives the limit.
	for i, row := range r.Rows {
		if row[0] != int64(25-i) {
			t.Fatalf("row %d: seq %v, want %d", i, row[0], 25-i)
		}
	}
	r, err = s.Query(ctx, "SELECT seq FROM process_creation WHERE seq <= 10 -- a trailing comment\n;")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 10 || r.Truncated {
		t.Errorf("exactly the limit: got %d rows, truncated %v", len(r.Rows), r.Truncated)
	}
}

func TestQueryIsReadOnly(t *testing.T) {
	s := open(t, duckdb.Options{})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 3)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DELETE FROM process_creation",
		"DROP TABLE process_creation",
		"INSERT INTO vigil_meta VALUES ('a', 'b')",
		"UPDATE process_creation SET hostname = 'x'",
		"SELECT 1; DELETE FROM process_creation",
		"SET enable_external_access = true",
		"ATTACH '/tmp/x.duckdb' AS x",
		"COPY process_creation TO '/tmp/out.csv'",
		"CREATE TABLE x AS SELECT 1",
	} {
		if _, err := s.Query(ctx, q); err == nil {
			t.Errorf("%q: no error", q)
		}
	}
	// Reading files from SQL is disabled.
	if _, err := s.Query(ctx, "SELECT * FROM read_csv('/etc/passwd')"); err == nil {
		t.Error("read_csv of /etc/passwd: no error")
	}
	r, err := s.Query(ctx, "SELECT count(*) FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(3) {
		t.Errorf("rows after refused writes: %v", r.Rows[0][0])
	}
	// Read-only forms people use in the console work.
	for _, q := range []string{
		"WITH x AS (SELECT 1 AS a) SELECT a FROM x",
		"DESCRIBE process_creation",
		"SHOW TABLES",
		"SUMMARIZE process_creation",
		"SELECT sum(process_pid) FROM process_creation",
	} {
		if _, err := s.Query(ctx, q); err != nil {
			t.Errorf("%q: %v", q, err)
		}
	}
}

func TestIngestedAtFromClock(t *testing.T) {
	clock := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	s := open(t, duckdb.Options{Now: func() time.Time { return clock }})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 1)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT ingested_at FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rows[0][0].(time.Time); !got.Equal(clock) {
		t.Errorf("ingested_at %v, want %v", got, clock)
	}
}

func TestTimeWithZoneComparesAsUTC(t *testing.T) {
	s := open(t, duckdb.Options{})
	ctx := context.Background()
	if err := s.Append(ctx, events("h", 0, 10)); err != nil {
		t.Fatal(err)
	}
	loc := time.FixedZone("UTC+5", 5*3600)
	from := t0.Add(5 * time.Millisecond).In(loc)
	r, err := s.Query(ctx, "SELECT count(*) FROM process_creation WHERE event_time >= ?", from)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(5) {
		t.Errorf("rows at or after %v: %v, want 5", from, r.Rows[0][0])
	}
}

func duckdbOptions() duckdb.Options {
	if os.Getenv("VIGIL_BENCH_DEBUG") != "" {
		return duckdb.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	}
	return duckdb.Options{}
}

// TestSeqSurvivesRetentionAndReopen: when retention deletes every row,
// seq still continues above the highest value ever assigned after a
// reopen, so detection watermarks never skip new rows.
func TestSeqSurvivesRetentionAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	ctx := context.Background()
	s, err := duckdb.Open(ctx, duckdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, events("h", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBefore(ctx, t0.Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("DeleteBefore: %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, duckdb.Options{Path: path})
	if err := s.Append(ctx, events("h", 100, 1)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Query(ctx, "SELECT seq FROM process_creation")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != int64(11) {
		t.Errorf("seq after retention and reopen: %v, want 11", r.Rows)
	}
}

// TestMemorySettings: DuckDB gets the store's bounded memory limit and
// checkpoint threshold by default, and the ones Options name. Expected
// values are what DuckDB itself reports for the same settings.
func TestMemorySettings(t *testing.T) {
	ctx := context.Background()
	ref, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	ref.SetMaxOpenConns(1)
	want := func(name, value string) string {
		t.Helper()
		if _, err := ref.ExecContext(ctx, "SET "+name+" = '"+value+"'"); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := ref.QueryRowContext(ctx, "SELECT current_setting('"+name+"')").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		opts                   duckdb.Options
		memory, checkpointWant string
	}{
		{duckdb.Options{}, duckdb.DefaultMemoryLimit, duckdb.DefaultCheckpointThreshold},
		{duckdb.Options{MemoryLimit: "1GB", CheckpointThreshold: "32MB"}, "1GB", "32MB"},
	} {
		s := open(t, c.opts)
		r, err := s.Query(ctx, "SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')")
		if err != nil {
			t.Fatal(err)
		}
		if got, w := r.Rows[0][0], want("memory_limit", c.memory); got != w {
			t.Errorf("%+v: memory_limit = %v, want %v (%s)", c.opts, got, w, c.memory)
		}
		if got, w := r.Rows[0][1], want("checkpoint_threshold", c.checkpointWant); got != w {
			t.Errorf("%+v: checkpoint_threshold = %v, want %v (%s)", c.opts, got, w, c.checkpointWant)
		}
	}
}
