package detect_test

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigilhq/vigil/detect"
	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/schema"
)

// BenchmarkRunOnce100Rules: one detection cycle of 100 rules over 10,000
// new process events (one second of load at 10k events/s) in DuckDB.
func BenchmarkRunOnce100Rules(b *testing.B) {
	db := duckdbtest.Open(b)
	tbl, _ := schema.Lookup("process_creation")
	db.CreateTable(b, tbl)
	fsys := fstest.MapFS{}
	for i := 0; i < 100; i++ {
		fsys[fmt.Sprintf("r/%03d.yml", i)] = &fstest.MapFile{Data: []byte(rule(fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "R", "process_creation",
			fmt.Sprintf("  sel:\n    CommandLine|contains: 'marker-%03d '\n  condition: sel", i)))}
	}
	db.Exec(context.Background(), `INSERT INTO process_creation (seq, event_id, host_id, hostname, event_time, process_executable, process_command_line)
		SELECT i, 'e' || i, 'h', 'h', TIMESTAMP '2026-11-27 00:00:00', '/usr/bin/python3',
		CASE WHEN i % 100 = 0 THEN 'sh -c marker-' || lpad(CAST((i // 100) % 100 AS VARCHAR), 3, '0') || ' x' ELSE '/usr/bin/python3 worker.py --job ' || i END
		FROM range(1, 10001) t(i)`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		eng := detect.New(detect.Options{Querier: db, State: newFakeState(), Now: time.Now})
		if errs := eng.Load(fsys, "r"); len(errs) > 0 {
			b.Fatal(errs)
		}
		b.StartTimer()
		n, err := eng.RunOnce(context.Background())
		if err != nil || n != 100 {
			b.Fatalf("%d alerts, %v", n, err)
		}
	}
}
