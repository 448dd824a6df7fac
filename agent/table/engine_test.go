package table

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCancelRunningQuery interrupts a query that would run for minutes.
func TestCancelRunningQuery(t *testing.T) {
	e := openTest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.Query(ctx, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) SELECT count(*) FROM c")
	if err == nil {
		t.Fatal("the query was not interrupted")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("interrupt took %v", d)
	}
	// The engine still answers afterwards.
	if _, err := e.Query(context.Background(), "SELECT 1"); err != nil {
		t.Errorf("after an interrupt: %v", err)
	}
}

func TestClosedEngine(t *testing.T) {
	e := openTest(t, Options{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Query(context.Background(), "SELECT 1"); err == nil {
		t.Error("a closed engine answered")
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestTablesSorted(t *testing.T) {
	e := openTest(t, Options{})
	ts := e.Tables()
	for i := 1; i < len(ts); i++ {
		if ts[i-1].Name >= ts[i].Name {
			t.Errorf("Tables() not sorted: %s before %s", ts[i-1].Name, ts[i].Name)
		}
	}
	// Callers get copies.
	ts[0].Columns[0].Name = "changed"
	if e.Tables()[0].Columns[0].Name == "changed" {
		t.Error("Tables() exposes the registry")
	}
	// Every listed table answers a query (required ones with a constraint).
	for _, s := range ts {
		q := `SELECT * FROM "` + s.Name + `" LIMIT 1`
		if hasRequired(s) {
			q = `SELECT * FROM "` + s.Name + `" WHERE path = '/nonexistent'`
		}
		if _, err := e.Query(context.Background(), q); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}
