package vigil_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// The import rules of ARCHITECTURE.md, enforced: a change that breaks one
// fails here with the path of the offending import.

const module = "github.com/vigilhq/vigil"

type listed struct {
	ImportPath string
	Standard   bool
	CgoFiles   []string
	Deps       []string
}

// goList runs `go list -deps -json` on pkgs with env added.
func goList(t *testing.T, env []string, pkgs ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json=ImportPath,Standard,CgoFiles"}, pkgs...)...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", pkgs, err, msg)
	}
	var all []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p)
	}
	return all
}

func TestAgentImports(t *testing.T) {
	forbidden := []string{"/control", "/ingest", "/store", "/detect", "/web", "/state", "/stream", "/pki"}
	deps := goList(t, []string{"CGO_ENABLED=0"}, "./agent/...", "./cmd/vigil-agent")
	if len(deps) == 0 {
		t.Fatal("go list returned nothing")
	}
	for _, p := range deps {
		if strings.HasPrefix(p.ImportPath, module+"/") {
			rel := strings.TrimPrefix(p.ImportPath, module)
			for _, f := range forbidden {
				if rel == f || strings.HasPrefix(rel, f+"/") {
					t.Errorf("agent depends on %s: agent packages must not import %s", p.ImportPath, f)
				}
			}
		}
		if len(p.CgoFiles) > 0 {
			t.Errorf("agent depends on cgo package %s", p.ImportPath)
		}
		for _, drv := range []string{"duckdb", "clickhouse", "pgx", "franz-go"} {
			if strings.Contains(p.ImportPath, drv) {
				t.Errorf("agent depends on %s", p.ImportPath)
			}
		}
	}
}

func TestSigmaImportsNoDriver(t *testing.T) {
	for _, p := range goList(t, nil, "./detect/sigma") {
		for _, drv := range []string{"duckdb", "clickhouse", "pgx", "modernc.org/sqlite", "database/sql"} {
			if strings.Contains(p.ImportPath, drv) {
				t.Errorf("detect/sigma depends on %s: it must not import a database driver", p.ImportPath)
			}
		}
	}
}

func TestWireAndSchemaImportOnlyStd(t *testing.T) {
	for _, pkg := range []string{"./osquery", "./schema", "."} {
		for _, p := range goList(t, nil, pkg) {
			if p.Standard || p.ImportPath == module {
				continue
			}
			if strings.HasPrefix(p.ImportPath, module+"/osquery") && pkg == "./osquery" {
				continue
			}
			if strings.HasPrefix(p.ImportPath, module+"/schema") && pkg == "./schema" {
				continue
			}
			t.Errorf("%s depends on %s: it may import only the standard library and the root package", pkg, p.ImportPath)
		}
	}
}
