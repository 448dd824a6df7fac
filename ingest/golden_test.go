package ingest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenInput is the first line of a testdata/golden/*.input file; every
// following line is one log line exactly as it would arrive in /log data.
type goldenInput struct {
	Host        vigil.Host        `json:"host"`
	LogType     string            `json:"log_type"`
	QueryTables map[string]string `json:"query_tables"` // null: no QueryTable func
}

type goldenOutput struct {
	Error   string            `json:"error,omitempty"`
	Results []vigil.ResultRow `json:"results"`
	Events  []vigil.Event     `json:"events"`
	Stats   ingest.Stats      `json:"stats"`
}

// TestGolden decodes and normalises recorded osquery lines (the examples of
// osquery's logging.md and process-auditing.md, and lines in the same
// formats for the other mapped tables) and compares the batch with
// testdata/golden/*.golden.json. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.input")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<20)
			if !sc.Scan() {
				t.Fatal("empty input")
			}
			var hdr goldenInput
			if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
				t.Fatalf("%s:1: header: %v", in, err)
			}
			var lines []json.RawMessage
			for sc.Scan() {
				lines = append(lines, json.RawMessage(bytes.Clone(sc.Bytes())))
			}
			opts := ingest.Options{Now: func() time.Time { return time.Unix(0, 0) }}
			if hdr.QueryTables != nil {
				opts.QueryTable = func(q string) string { return hdr.QueryTables[q] }
			}
			ing := ingest.New(opts)
			b, err := ing.Decode(hdr.Host, hdr.LogType, lines)
			out := goldenOutput{Results: b.Results, Events: b.Events, Stats: ing.Stats()}
			if err != nil {
				out.Error = err.Error()
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".input") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the normalisation; got:\n%s\n(run with -update if the change is intended)", golden, got)
			}
		})
	}
}
