package duckdb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store/duckdb"
)

func Example() {
	dir, _ := os.MkdirTemp("", "vigil-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	batch := vigil.Batch{Events: []vigil.Event{{
		ID: "e1", Table: "process_creation", HostID: "h1", Time: at,
		Fields: map[string]any{"process_executable": "/usr/bin/curl", "process_command_line": "curl example.com"},
	}}}
	// Appending the same batch twice (a replay) stores it once.
	for range 2 {
		if err := s.Append(ctx, batch); err != nil {
			fmt.Println(err)
			return
		}
	}
	rows, err := s.Query(ctx, `SELECT seq, process_command_line FROM process_creation WHERE host_id = ? AND event_time >= ?`, "h1", at)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rows.Columns, rows.Rows)
	// Output: [seq process_command_line] [[1 curl example.com]]
}
