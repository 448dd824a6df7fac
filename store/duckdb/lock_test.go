package duckdb_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store/duckdb"
)

// TestHoldStore is not a test: run by TestSecondProcessIsRefused as a
// child process, it opens the store named by VIGIL_HOLD_STORE and holds it
// until its stdin closes.
func TestHoldStore(t *testing.T) {
	path := os.Getenv("VIGIL_HOLD_STORE")
	if path == "" {
		t.Skip("helper process for TestSecondProcessIsRefused")
	}
	s, err := duckdb.Open(context.Background(), duckdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os.Stdout.WriteString("holding\n")
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// TestSecondProcessIsRefused: DuckDB lets one process open a file
// read-write; the second gets an error that says so.
func TestSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldStore$")
	cmd.Env = append(os.Environ(), "VIGIL_HOLD_STORE="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if !strings.Contains(line, "holding") {
			t.Fatalf("helper said %q", line)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("helper did not open the store")
	}
	_, err := duckdb.Open(context.Background(), duckdb.Options{Path: path})
	if !errors.Is(err, vigil.ErrUnavailable) || !strings.Contains(err.Error(), "another process has the file open") {
		t.Fatalf("second process: %v", err)
	}
}
