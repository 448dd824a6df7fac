package duckdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
	"github.com/vigilhq/vigil/store/duckdb"
)

func resultRows(query string, from int, cols ...map[string]string) []vigil.ResultRow {
	var out []vigil.ResultRow
	for i, c := range cols {
		out = append(out, vigil.ResultRow{ID: query + "-" + string(rune('a'+from+i)), HostID: "h", Query: query, Action: "snapshot", Time: t0, Columns: c})
	}
	return out
}

// TestResultViewsMigrateFromV1: a file written before result views (schema
// version 1: no views, no catalogue) gets a view for every query in its
// results table when it is opened, and the views survive a reopen.
func TestResultViewsMigrateFromV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s, err := duckdb.Open(ctx, duckdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	rows := append(resultRows("processes", 0, map[string]string{"pid": "1", "name": "init"}, map[string]string{"pid": "2", "cmdline": "x"}),
		resultRows("Listening Ports", 2, map[string]string{"port": "22"})...)
	if err := s.Append(ctx, vigil.Batch{Results: rows}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Make it a version 1 file.
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"DROP VIEW results_processes",
		`DROP VIEW "` + resultsView("Listening Ports") + `"`,
		"DROP TABLE " + schema.ResultViewsTable,
		"UPDATE vigil_meta SET value = '1' WHERE key = 'schema_version'",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	for range 2 { // the migration, then a plain reopen
		s := open(t, duckdb.Options{Path: path})
		r, err := s.Query(ctx, "SELECT pid, name, cmdline FROM results_processes WHERE pid IN ('1', '2') ORDER BY pid")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Rows) != 2 || r.Rows[0][1] != "init" || r.Rows[1][2] != "x" {
			t.Errorf("results_processes: %v", r.Rows)
		}
		r, err = s.Query(ctx, `SELECT port FROM "`+resultsView("Listening Ports")+`"`)
		if err != nil || len(r.Rows) != 1 || r.Rows[0][0] != "22" {
			t.Errorf("listening ports view: %v, %v", r, err)
		}
		r, err = s.Query(ctx, "SELECT value FROM vigil_meta WHERE key = 'schema_version'")
		if err != nil || r.Rows[0][0] != "2" {
			t.Errorf("schema version after migration: %v, %v", r, err)
		}
		st, err := s.Stats(ctx)
		if err != nil || st.ResultViews.Views != 2 {
			t.Errorf("Stats.ResultViews: %+v, %v", st.ResultViews, err)
		}
		// A new column after the reopen extends the loaded view.
		if err := s.Append(ctx, vigil.Batch{Results: resultRows("processes", 5, map[string]string{"pid": "3", "uid": "0"})}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Query(ctx, "SELECT uid FROM results_processes WHERE pid = '3'"); err != nil || len(r.Rows) != 1 || r.Rows[0][0] != "0" {
			t.Errorf("new column after reopen: %v, %v", r, err)
		}
		s.Close()
	}
}

// TestResultViewsCap: beyond MaxResultViews, queries get no view; their
// rows are stored all the same and the refusal is counted.
func TestResultViewsCap(t *testing.T) {
	ctx := context.Background()
	s := open(t, duckdb.Options{MaxResultViews: 2})
	var rows []vigil.ResultRow
	for _, q := range []string{"q1", "q2", "q3", "q4"} {
		rows = append(rows, resultRows(q, 0, map[string]string{"v": q})...)
	}
	if err := s.Append(ctx, vigil.Batch{Results: rows}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"q1", "q2"} {
		if _, err := s.Query(ctx, "SELECT v FROM results_"+q); err != nil {
			t.Errorf("results_%s: %v", q, err)
		}
	}
	for _, q := range []string{"q3", "q4"} {
		if _, err := s.Query(ctx, "SELECT v FROM results_"+q); err == nil {
			t.Errorf("results_%s exists beyond the cap", q)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ResultViews.Views != 2 || st.ResultViews.Refused != 2 || st.Rows[schema.ResultsTable] != 4 {
		t.Errorf("Stats: views %+v, rows %d", st.ResultViews, st.Rows[schema.ResultsTable])
	}
}

func resultsView(q string) string { return store.ResultViewName(q) }

// FuzzDuckDBString: whatever the string, its literal reads back as itself
// in DuckDB, or it is refused; it never ends the literal early.
func FuzzDuckDBString(f *testing.F) {
	f.Add("plain")
	f.Add("it's '' \\ \" ünï")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	f.Fuzz(func(t *testing.T, s string) {
		lit, ok := store.DuckDBString(s)
		if !ok {
			if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
				t.Fatalf("DuckDBString(%q) refused", s)
			}
			return
		}
		var got string
		var n int
		if err := db.QueryRow("SELECT "+lit+", 1").Scan(&got, &n); err != nil {
			t.Fatalf("SELECT %s: %v", lit, err)
		}
		if got != s || n != 1 {
			t.Fatalf("SELECT %s = %q, %d; want %q, 1", lit, got, n, s)
		}
	})
}

// TestResultViewsCaughtUpAtOpen: rows committed whose views could not be
// made (here a table holds the view's name; a crash after the commit
// leaves the same state) get their views at a later open, and only the
// rows from the mark on are looked at.
func TestResultViewsCaughtUpAtOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s := open(t, duckdb.Options{Path: path})
	if err := s.Append(ctx, vigil.Batch{Results: resultRows("early", 0, map[string]string{"a": "1"})}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exec := func(stmts ...string) {
		t.Helper()
		db, err := sql.Open("duckdb", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, stmt := range stmts {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	// Without its catalogue entry and view, "early" shows whether the
	// catch-up reads rows from before the mark: it must not.
	exec("DROP VIEW results_early", "DELETE FROM "+schema.ResultViewsTable+" WHERE query_name = 'early'",
		"CREATE TABLE results_late (x INTEGER)")

	s = open(t, duckdb.Options{Path: path})
	if err := s.Append(ctx, vigil.Batch{Results: resultRows("late", 1, map[string]string{"pid": "7"})}); err != nil {
		t.Fatal(err) // the rows are in even though their view failed
	}
	r, err := s.Query(ctx, "SELECT count(*) FROM query_results WHERE query_name = 'late'")
	if err != nil || fmt.Sprint(r.Rows[0][0]) != "1" {
		t.Fatalf("late rows: %v, %v", r, err)
	}
	mark := func(s *duckdb.Store) []any {
		r, err := s.Query(ctx, "SELECT value FROM vigil_meta WHERE key = 'views_due_from_seq'")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Rows) == 0 {
			return nil
		}
		return r.Rows[0]
	}
	if mark(s) == nil {
		t.Fatal("no views-due mark after a view failed")
	}
	s.Close()

	s = open(t, duckdb.Options{Path: path})
	if mark(s) == nil {
		t.Fatal("the mark went while the view still cannot be made")
	}
	s.Close()

	exec("DROP TABLE results_late")
	s = open(t, duckdb.Options{Path: path})
	r, err = s.Query(ctx, "SELECT pid FROM results_late")
	if err != nil || len(r.Rows) != 1 || r.Rows[0][0] != "7" {
		t.Fatalf("results_late after the catch-up: %v, %v", r, err)
	}
	if m := mark(s); m != nil {
		t.Errorf("mark %v left after the views were made", m)
	}
	if _, err := s.Query(ctx, "SELECT * FROM results_early"); err == nil {
		t.Error("the catch-up read rows from before the mark")
	}
	s.Close()
}
