package agent

import (
	"strconv"
	"testing"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

func rows(names ...string) []map[string]string {
	var out []map[string]string
	for _, n := range names {
		out = append(out, map[string]string{"name": n})
	}
	return out
}

func actions(ls []osquery.ResultLine) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Action+":"+l.Columns["name"])
	}
	return out
}

func TestDiffRowsMultiset(t *testing.T) {
	added, removed := diffRows(rows("a", "a", "b"), rows("a", "b", "b", "c"))
	if len(added) != 2 || added[0]["name"] != "b" || added[1]["name"] != "c" {
		t.Fatalf("added %v", added)
	}
	if len(removed) != 1 || removed[0]["name"] != "a" {
		t.Fatalf("removed %v", removed)
	}
	if a, r := diffRows(rows("x", "y"), rows("y", "x")); len(a)+len(r) != 0 {
		t.Fatalf("order change produced a diff: %v %v", a, r)
	}
}

func TestResultsDifferential(t *testing.T) {
	h := lineHeader{name: "q", host: "h", now: time.Unix(1700000000, 0), epoch: 3}
	lines, st := results(kindDiff, h, "SELECT", true, nil, rows("a", "b"))
	if got := actions(lines); len(got) != 2 || got[0] != "added:a" || lines[0].Counter != 0 || lines[0].Epoch != 3 {
		t.Fatalf("first run %v counter %d", got, lines[0].Counter)
	}
	if lines[0].CalendarTime != "Tue Nov 14 22:13:20 2023 UTC" || lines[0].UnixTime != 1700000000 {
		t.Fatalf("time fields %q %d", lines[0].CalendarTime, lines[0].UnixTime)
	}
	// Unchanged: nothing logged, state unchanged.
	if lines, st2 := results(kindDiff, h, "SELECT", true, st, rows("b", "a")); lines != nil || st2 != nil {
		t.Fatalf("unchanged run logged %v", actions(lines))
	}
	lines, st = results(kindDiff, h, "SELECT", true, st, rows("a", "c"))
	if got := actions(lines); len(got) != 2 || got[0] != "removed:b" || got[1] != "added:c" || lines[0].Counter != 1 {
		t.Fatalf("second run %v", got)
	}
	lines, _ = results(kindDiff, h, "SELECT", false, st, rows("d"))
	if got := actions(lines); len(got) != 1 || got[0] != "added:d" || lines[0].Counter != 2 {
		t.Fatalf("removed:false run %v", got)
	}
	// A new epoch or a changed query starts over: all added, counter 0.
	h2 := h
	h2.epoch = 4
	lines, _ = results(kindDiff, h2, "SELECT", true, st, rows("a", "c"))
	if len(lines) != 2 || lines[0].Counter != 0 || lines[0].Action != osquery.ActionAdded {
		t.Fatalf("new epoch %v", actions(lines))
	}
	lines, _ = results(kindDiff, h, "SELECT 2", true, st, rows("a", "c"))
	if len(lines) != 2 || lines[0].Counter != 0 {
		t.Fatalf("changed query %v", actions(lines))
	}
}

func TestResultsSnapshotAndEvent(t *testing.T) {
	h := lineHeader{name: "q", host: "h", now: time.Unix(1, 0)}
	lines, st := results(kindSnapshot, h, "S", true, nil, rows("a", "b"))
	if len(lines) != 1 || lines[0].Action != osquery.ActionSnapshot || len(lines[0].Snapshot) != 2 || lines[0].Counter != 0 {
		t.Fatalf("snapshot %+v", lines)
	}
	lines, _ = results(kindSnapshot, h, "S", true, st, rows("a", "b"))
	if len(lines) != 1 || lines[0].Counter != 1 {
		t.Fatalf("second snapshot %+v", lines)
	}
	lines, st = results(kindEvent, h, "E", true, nil, rows("e1", "e2"))
	if got := actions(lines); len(got) != 2 || lines[0].Counter != 1 {
		t.Fatalf("events %v counter %d", got, lines[0].Counter)
	}
	if lines, st2 := results(kindEvent, h, "E", true, st, nil); lines != nil || st2 != nil {
		t.Fatal("no new events logged something")
	}
	lines, _ = results(kindEvent, h, "E", true, st, rows("e3"))
	if len(lines) != 1 || lines[0].Counter != 2 {
		t.Fatalf("more events %+v", lines)
	}
}

// BenchmarkResults10k is one differential run over 10,000 rows with 1%
// changed.
func BenchmarkResults10k(b *testing.B) {
	prev := make([]map[string]string, 10000)
	cur := make([]map[string]string, 10000)
	for i := range prev {
		prev[i] = map[string]string{"pid": strconv.Itoa(i), "name": "proc" + strconv.Itoa(i), "path": "/usr/bin/x"}
		cur[i] = prev[i]
		if i%100 == 0 {
			cur[i] = map[string]string{"pid": strconv.Itoa(i + 100000), "name": "new", "path": "/usr/bin/y"}
		}
	}
	st := &queryState{Query: "Q", Rows: prev}
	h := lineHeader{name: "q", host: "h", now: time.Unix(1, 0)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lines, _ := results(kindDiff, h, "Q", true, st, cur)
		if len(lines) != 200 {
			b.Fatalf("%d lines", len(lines))
		}
	}
}
