package sigma_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDriverImports enforces the architecture's import rule: the
// compiler and the engine reach stores only through store.Querier and
// link no database driver.
func TestNoDriverImports(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: go command not found")
	}
	for _, pkg := range []string{"github.com/vigilhq/vigil/detect/sigma", "github.com/vigilhq/vigil/detect"} {
		out, err := exec.Command(gobin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, banned := range []string{"duckdb", "clickhouse-go", "modernc.org/sqlite", "pgx", "lib/pq", "database/sql"} {
				if strings.Contains(dep, banned) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
