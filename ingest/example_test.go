package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/ingest/wal"
	"github.com/vigilhq/vigil/store/duckdb"
)

// Example wires ingest as a server does: a WAL for durability, a drainer
// into DuckDB, and one /log request from osquery.
func Example() {
	dir, _ := os.MkdirTemp("", "vigil-ingest-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	st, err := duckdb.Open(ctx, duckdb.Options{Path: filepath.Join(dir, "events.duckdb")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal")})
	if err != nil {
		fmt.Println(err)
		return
	}
	ing := ingest.New(ingest.Options{Appender: st, WAL: w})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- ing.Run(runCtx) }()

	// The /log handler: acknowledge once Log returns nil.
	host := vigil.Host{ID: "h1", Hostname: "web1"}
	line := `{"name":"process_events","action":"added","unixTime":1767225600,"epoch":0,"counter":1,
		"columns":{"pid":"4242","path":"/usr/bin/curl","cmdline":"curl -s example.com","parent":"1","uid":"1000","time":"1767225599"}}`
	if err := ing.Log(ctx, host, "result", []json.RawMessage{json.RawMessage(line)}); err != nil {
		fmt.Println(err) // vigil.ErrUnavailable: answer 503 + Retry-After
		return
	}

	// Shutdown: let the drainer finish, then stop it and close the WAL.
	ing.WaitDrained(ctx)
	stop()
	<-done
	w.Close()

	rows, _ := st.Query(ctx, "SELECT process_name, process_command_line, event_time FROM process_creation")
	fmt.Println(rows.Rows)
	// Output: [[curl curl -s example.com 2025-12-31 23:59:59 +0000 UTC]]
}
