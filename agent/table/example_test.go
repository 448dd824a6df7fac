package table_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigilhq/vigil/agent/table"
)

// Open an engine over a fixture tree and query it with SQL, as the agent's
// scheduler and distributed queries do.
func Example() {
	root, _ := filepath.Abs("testdata/root")
	e, err := table.Open(context.Background(), table.Options{Root: root})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()

	res, err := e.Query(context.Background(), "SELECT pid, name, cmdline FROM processes WHERE pid = 100")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range res.Rows {
		fmt.Println(r["pid"], r["name"], r["cmdline"])
	}

	_, err = e.Query(context.Background(), "SELECT * FROM file")
	fmt.Println(err)
	// Output:
	// 100 sleep sleep 300
	// table "file" requires a constraint on "path" or "directory"
}

// memEvents is a one-table EventSource.
type memEvents []map[string]string

func (m memEvents) Rows(tbl string, after uint64) ([]map[string]string, uint64) {
	if tbl != "process_events" || after >= uint64(len(m)) {
		return nil, after
	}
	return m[after:], uint64(len(m))
}

// QueryAs gives each event row once per scheduled query.
func ExampleEngine_QueryAs() {
	ev := memEvents{{"pid": "7", "path": "/usr/bin/curl"}}
	e, err := table.Open(context.Background(), table.Options{Events: ev, Logger: nil})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer e.Close()
	for i := 0; i < 2; i++ {
		res, _ := e.QueryAs(context.Background(), "execs", "SELECT pid, path FROM process_events")
		fmt.Println(len(res.Rows), "new rows")
	}
	// Output:
	// 1 new rows
	// 0 new rows
}
