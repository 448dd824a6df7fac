package agent

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// queryState is what the agent remembers of a scheduled query between runs
// and restarts (osquery keeps it in RocksDB): the last result set for the
// differential, the counter and the epoch.
type queryState struct {
	Query   string              `json:"query"`
	Epoch   int64               `json:"epoch"`
	Counter int64               `json:"counter"`
	Rows    []map[string]string `json:"rows,omitempty"`
}

// diffStore persists one JSON file per scheduled query.
type diffStore struct{ dir string }

func (d diffStore) path(name string) string {
	// Hex keeps any query name a safe file name.
	return filepath.Join(d.dir, hex.EncodeToString([]byte(name))+".json")
}

func (d diffStore) load(name string) (*queryState, error) {
	b, err := os.ReadFile(d.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state of %q: %w", name, err)
	}
	var st queryState
	if err := json.Unmarshal(b, &st); err != nil {
		// A damaged state file is treated as a fresh start, not an error
		// that stops the query forever.
		return nil, nil
	}
	return &st, nil
}

func (d diffStore) save(name string, st *queryState) error {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("save state of %q: %w", name, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save state of %q: %w", name, err)
	}
	return writeFileAtomic(d.path(name), b, 0o600)
}

// rowKey is a canonical form of a row: its columns sorted, each name and
// value length-prefixed so that no two different rows share a key.
func rowKey(r map[string]string) string {
	var stack [32]string
	keys := stack[:0]
	n := 0
	for k, v := range r {
		keys = append(keys, k)
		n += len(k) + len(v) + 8
	}
	sort.Strings(keys)
	b := make([]byte, 0, n)
	for _, k := range keys {
		v := r[k]
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(b)
}

// diffRows compares two result sets as multisets.
func diffRows(prev, cur []map[string]string) (added, removed []map[string]string) {
	prevKeys := make([]string, len(prev))
	count := make(map[string]int, len(prev))
	for i, r := range prev {
		prevKeys[i] = rowKey(r)
		count[prevKeys[i]]++
	}
	for _, r := range cur {
		k := rowKey(r)
		if count[k] > 0 {
			count[k]--
			continue
		}
		added = append(added, r)
	}
	for i, r := range prev {
		if k := prevKeys[i]; count[k] > 0 {
			count[k]--
			removed = append(removed, r)
		}
	}
	return added, removed
}

// runKind says how a scheduled query's results are logged.
type runKind int

const (
	kindDiff     runKind = iota // added/removed against the previous run
	kindSnapshot                // the whole result set every run
	kindEvent                   // event table: every new row once, "added"
)

// lineHeader holds the fields every result line of one run shares.
type lineHeader struct {
	name, host  string
	now         time.Time
	epoch       int64
	decorations map[string]string
}

func (h lineHeader) line(counter int64) osquery.ResultLine {
	return osquery.ResultLine{
		Name:           h.name,
		HostIdentifier: h.host,
		CalendarTime:   osquery.CalendarTime(h.now),
		UnixTime:       osquery.Int(h.now.Unix()),
		Epoch:          osquery.Int(h.epoch),
		Counter:        osquery.Int(counter),
		Numerics:       false,
		Decorations:    h.decorations,
	}
}

// results computes the log lines of one run and the state to save (nil:
// unchanged). It follows osquery: the first run (or a new epoch, or a
// changed query) logs every row as added with counter 0; later runs log the
// differences with the counter incremented, nothing when nothing changed.
func results(kind runKind, h lineHeader, sql string, logRemoved bool, prev *queryState, rows []map[string]string) ([]osquery.ResultLine, *queryState) {
	var counter int64
	fresh := prev == nil || prev.Epoch != h.epoch || prev.Query != sql
	if !fresh {
		counter = prev.Counter
	}
	var lines []osquery.ResultLine
	switch kind {
	case kindSnapshot:
		if !fresh {
			counter++
		}
		if len(rows) > 0 {
			l := h.line(counter)
			l.Action = osquery.ActionSnapshot
			l.Snapshot = rows
			lines = append(lines, l)
		}
		return lines, &queryState{Query: sql, Epoch: h.epoch, Counter: counter}
	case kindEvent:
		if len(rows) == 0 {
			if fresh {
				return nil, &queryState{Query: sql, Epoch: h.epoch, Counter: 0}
			}
			return nil, nil
		}
		counter++
		for _, r := range rows {
			l := h.line(counter)
			l.Action, l.Columns = osquery.ActionAdded, r
			lines = append(lines, l)
		}
		return lines, &queryState{Query: sql, Epoch: h.epoch, Counter: counter}
	}
	var added, removed []map[string]string
	if fresh {
		added = rows
	} else {
		added, removed = diffRows(prev.Rows, rows)
		if len(added) == 0 && len(removed) == 0 {
			return nil, nil
		}
		counter++
	}
	if logRemoved {
		for _, r := range removed {
			l := h.line(counter)
			l.Action, l.Columns = osquery.ActionRemoved, r
			lines = append(lines, l)
		}
	}
	for _, r := range added {
		l := h.line(counter)
		l.Action, l.Columns = osquery.ActionAdded, r
		lines = append(lines, l)
	}
	if rows == nil {
		rows = []map[string]string{}
	}
	return lines, &queryState{Query: sql, Epoch: h.epoch, Counter: counter, Rows: rows}
}
