package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCatalogUpToDate regenerates the catalog from the corpus and
// compares it with the checked-in schema/sigma_catalog_gen.go.
func TestCatalogUpToDate(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join(root, "..", "shared", "sigma-rules")
	if _, err := os.Stat(corpus); err != nil {
		t.Skipf("skipping: reference data %s is missing (%v)", corpus, err)
	}
	got, err := generate(corpus)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, "schema", "sigma_catalog_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("schema/sigma_catalog_gen.go is stale: run go run ./detect/sigma/internal/catalog")
	}
}
