package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDeps enforces the agent's import rules: no server package, no cgo
// (the binary must build with CGO_ENABLED=0 as one static file).
func TestDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"control", "ingest", "store", "detect", "web", "state", "stream"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, cgo := f[0], f[1]
		for _, p := range forbidden {
			mod := "github.com/vigilhq/vigil/" + p
			if pkg == mod || strings.HasPrefix(pkg, mod+"/") {
				t.Errorf("vigil-agent imports server package %s", pkg)
			}
		}
		if strings.Contains(pkg, "duckdb") || strings.Contains(pkg, "clickhouse") {
			t.Errorf("vigil-agent imports %s", pkg)
		}
		// The standard library has cgo variants (net, os/user, runtime/cgo)
		// that CGO_ENABLED=0 replaces; third-party cgo has no such fallback.
		if cgo != "0" && strings.Contains(strings.SplitN(pkg, "/", 2)[0], ".") {
			t.Errorf("vigil-agent depends on cgo package %s", pkg)
		}
	}
}
