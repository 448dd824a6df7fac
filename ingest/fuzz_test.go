package ingest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/vigilhq/vigil/osquery"
	"github.com/vigilhq/vigil/store"
)

// FuzzDecodeLine checks that no input panics the decoders, that every
// rejection carries a known reason, and that an accepted result line
// survives re-encoding unchanged. Seeds: testdata/fuzz/FuzzDecodeLine.
func FuzzDecodeLine(f *testing.F) {
	f.Add([]byte(`{"action":"added","columns":{"pid":1,"path":"/bin/sh"},"name":"process_events","unixTime":"12","numerics":true}`))
	f.Add([]byte(`{"diffResults":{"added":[{"a":"1"}],"removed":null},"name":"q","calendarTime":"Mon May  2 22:27:32 2016 UTC"}`))
	f.Add([]byte(`{"name":"a","NAME":"b","action":"added","columns":{"x":"1"},"Columns":{"y":"2"},"unixTime":1,"UnixTime":"2"}`))
	f.Add([]byte(`{"name":"a","action":"added","columns":{"x":"1","x":"2"},"unixTime":1}`))
	f.Add([]byte(`{"name":"q","action":"snapshot","snapshot":[{"a":"1","b":"2"},{"a":"3","b":"\u00e9"},{"b":"1","a":"2"}],"unixTime":1}`))
	f.Add([]byte(`{"name":"q","action":"added","columns":{"a":"1", "b":"2"},"unixTime":1}`))
	f.Add([]byte("{\"name\":\"\xff\",\"action\":\"added\",\"columns\":{\"x\":\"\xfe\"},\"unixTime\":1}"))
	known := map[string]bool{ReasonMalformed: true, ReasonFieldType: true, ReasonMissingName: true, ReasonUnknownAction: true,
		ReasonMissingCols: true, ReasonMissingTime: true, ReasonBadStatus: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := decodeResult(raw)
		if err != nil {
			var le *lineError
			if !errors.As(err, &le) || !known[le.reason] {
				t.Fatalf("rejection without a known reason: %v", err)
			}
		} else {
			// Differential: encoding/json reads the same line the same way.
			var v1 osquery.ResultLine
			if json.Unmarshal(raw, &v1) == nil {
				if v1.Name != r.line.Name || v1.Action != r.line.Action || v1.UnixTime != r.line.UnixTime ||
					v1.Epoch != r.line.Epoch || v1.Counter != r.line.Counter || len(v1.Columns) != len(r.line.Columns) ||
					len(v1.Snapshot) != len(r.line.Snapshot) || (v1.DiffResults == nil) != (r.line.DiffResults == nil) {
					t.Fatalf("fast and encoding/json decoders disagree:\n%+v\n%+v", r.line, v1)
				}
				for k, v := range v1.Columns {
					if r.line.Columns[k] != v {
						t.Fatalf("column %q: fast %q, encoding/json %q", k, r.line.Columns[k], v)
					}
				}
			}
			checkMetas(t, r)
			if r.line.Name == "" || r.time.IsZero() || len(r.sets) == 0 {
				t.Fatalf("accepted line without name, time or rows: %+v", r)
			}
			again, err := json.Marshal(r.line)
			if err != nil {
				t.Fatalf("re-encoding: %v", err)
			}
			r2, err := decodeResult(again)
			if err != nil {
				t.Fatalf("re-decoding %s: %v", again, err)
			}
			if !r2.time.Equal(r.time) || len(r2.sets) != len(r.sets) {
				t.Fatalf("round trip changed the line: %+v vs %+v", r, r2)
			}
			for i := range r.sets {
				if r.sets[i].action != r2.sets[i].action || len(r.sets[i].rows) != len(r2.sets[i].rows) {
					t.Fatalf("round trip changed set %d", i)
				}
				for j, row := range r.sets[i].rows {
					for k, v := range row {
						if r2.sets[i].rows[j][k] != v {
							t.Fatalf("round trip changed %s: %q -> %q", k, v, r2.sets[i].rows[j][k])
						}
					}
				}
			}
		}
		if _, _, _, err := decodeStatus(raw); err != nil {
			var le *lineError
			if !errors.As(err, &le) || !known[le.reason] {
				t.Fatalf("status rejection without a known reason: %v", err)
			}
		}
	})
}

// checkMetas: what the decoder says it learnt about a row is true of the
// row: its names in order, its encoding as EncodeColumns writes it.
func checkMetas(t *testing.T, r resultRows) {
	t.Helper()
	for i := range r.sets {
		for j, row := range r.sets[i].rows {
			m := r.sets[i].meta(j)
			if m.encoded != "" && m.encoded != store.EncodeColumns(row) {
				t.Fatalf("set %d row %d: encoded %s, EncodeColumns %s", i, j, m.encoded, store.EncodeColumns(row))
			}
			if m.names != nil {
				keys := make([]string, 0, len(row))
				for k := range row {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				if !slices.Equal(keys, m.names) {
					t.Fatalf("set %d row %d: names %q, keys %q", i, j, m.names, keys)
				}
			}
		}
	}
}
