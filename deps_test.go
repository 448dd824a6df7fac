package vigil_test

import (
	"encoding/json"
	"fmt"
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
	DepOnly    bool
	CgoFiles   []string
	Imports    []string
}

// goList runs `go list -deps -json` with env added; args are flags and
// package patterns.
func goList(t *testing.T, env []string, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json=ImportPath,Standard,DepOnly,CgoFiles,Imports"}, args...)...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", args, err, msg)
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

// importChain returns how a root (a package named on the command line)
// reaches target, as "a -> b -> target", so a failure says which import
// to remove.
func importChain(pkgs []listed, target string) string {
	byPath := map[string]listed{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	prev := map[string]string{}
	var queue []string
	for _, p := range pkgs {
		if !p.DepOnly {
			prev[p.ImportPath] = ""
			queue = append(queue, p.ImportPath)
		}
	}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			var chain []string
			for at := cur; at != ""; at = prev[at] {
				chain = append([]string{at}, chain...)
			}
			return strings.Join(chain, " -> ")
		}
		for _, next := range byPath[cur].Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return target
}

// agentPackages are the agent's packages: the binary, its libraries and
// agenttest, the fake osquery server its tests run against.
var agentPackages = []string{"./agent/...", "./cmd/vigil-agent"}

// TestAgentImports enforces that the agent stays a static, server-free
// binary: no package of the server side and no cgo, in the agent's code
// and in its tests.
//
// The rule covers test files (-test) and agenttest as well: the agent's
// tests run against agenttest's fake server, never the real control plane,
// so `go test ./agent/...` needs neither cgo nor the server's stores. A
// test that needs the real server belongs outside agent/, as cmd/vigil's
// TestUpEndToEnd does (the real agent against the real server).
func TestAgentImports(t *testing.T) {
	// CGO_ENABLED=1 on purpose: with 0, go list drops every file that
	// imports "C" by build constraint, so a cgo dependency shows no
	// CgoFiles and the check below would pass whatever the agent imports.
	deps := goList(t, []string{"CGO_ENABLED=1"}, append([]string{"-test"}, agentPackages...)...)
	if len(deps) == 0 {
		t.Fatal("go list returned nothing")
	}
	forbidden := []string{"/control", "/ingest", "/store", "/detect", "/web", "/state", "/stream", "/pki"}
	// One error per offending package (or driver), not one per test
	// variant or per internal package of a driver.
	reported := map[string]bool{}
	report := func(key, msg, id string) {
		t.Helper()
		if !reported[key] {
			reported[key] = true
			t.Errorf("%s\n\timport chain: %s", msg, importChain(deps, id))
		}
	}
	sawCgo := false
	for _, p := range deps {
		// Test variants are listed as "path [path.test]".
		path, _, _ := strings.Cut(p.ImportPath, " ")
		if strings.HasPrefix(path, module+"/") {
			rel := strings.TrimPrefix(path, module)
			for _, f := range forbidden {
				if rel == f || strings.HasPrefix(rel, f+"/") {
					report(path, fmt.Sprintf("agent depends on server package %s: agent packages must not import %s", path, module+f), p.ImportPath)
				}
			}
		}
		if len(p.CgoFiles) > 0 {
			sawCgo = true
			// The standard library's cgo variants (net, os/user,
			// runtime/cgo) have pure-Go twins that CGO_ENABLED=0 selects
			// (TestAgentBuildsWithoutCgo proves they do); a third-party
			// cgo package has none.
			if !p.Standard {
				report(path, fmt.Sprintf("agent depends on cgo package %s (cgo files %v): the agent must build with CGO_ENABLED=0", path, p.CgoFiles), p.ImportPath)
			}
		}
		for _, drv := range []string{"duckdb", "clickhouse", "pgx", "franz-go"} {
			if strings.Contains(path, drv) {
				report(drv, fmt.Sprintf("agent depends on %s (a %s package): server-side drivers stay out of the agent", path, drv), p.ImportPath)
			}
		}
	}
	// The agent uses net (net/http), whose cgo resolver must show here:
	// if nothing at all has cgo files, go list did not see cgo and this
	// test is blind again.
	if !sawCgo {
		t.Error("go list with CGO_ENABLED=1 showed no cgo file at all, not even net's: the cgo check above saw nothing")
	}
}

// TestAgentBuildsWithoutCgo compiles every agent package, agenttest
// included, as the release does (CGO_ENABLED=0, one static binary).
func TestAgentBuildsWithoutCgo(t *testing.T) {
	cmd := exec.Command("go", append([]string{"build"}, agentPackages...)...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build %v: %v\n%s", agentPackages, err, out)
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
