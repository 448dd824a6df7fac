package osquery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A write as osquery sends it: each row's keys in the SELECT's order.
const osqueryWrite = `{"node_key":"k","queries":{
	"q1":[{"pid":"1","name":"init","cmdline":"/sbin/init"},{"pid":"2","name":"kthreadd","cmdline":""}],
	"q2":[],
	"q3":[{"zeta":"z","alpha":"a"}]},
	"statuses":{"q1":0,"q2":"0","q3":0,"q4":1},"messages":{"q4":"no such table: nope"}}`

func TestDistributedWriteKeepsColumnOrder(t *testing.T) {
	var w DistributedWriteRequest
	if err := json.Unmarshal([]byte(osqueryWrite), &w); err != nil {
		t.Fatal(err)
	}
	if got := w.Columns["q1"]; !slices.Equal(got, []string{"pid", "name", "cmdline"}) {
		t.Errorf("q1 columns %q", got)
	}
	if got := w.Columns["q3"]; !slices.Equal(got, []string{"zeta", "alpha"}) {
		t.Errorf("q3 columns %q", got)
	}
	if _, ok := w.Columns["q2"]; ok || len(w.Columns) != 2 {
		t.Errorf("columns %v: want q1 and q3 only (q2 has no rows)", w.Columns)
	}
	if w.NodeKey != "k" || len(w.Queries["q1"]) != 2 || w.Queries["q1"][1]["name"] != "kthreadd" ||
		w.Queries["q2"] == nil || len(w.Queries["q2"]) != 0 || w.Statuses["q4"] != 1 || w.Messages["q4"] != "no such table: nope" {
		t.Errorf("decoded %+v", w)
	}

	// Written back, the rows keep that order and decode the same.
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`{"pid":"1","name":"init","cmdline":"/sbin/init"}`)) || !bytes.Contains(b, []byte(`[{"zeta":"z","alpha":"a"}]`)) {
		t.Errorf("marshalled %s", b)
	}
	var back DistributedWriteRequest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, w) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, w)
	}
}

// Without Columns a write is encoded exactly as before (plain osquery
// servers and old tests see the same bytes).
func TestDistributedWriteMarshalWithoutColumnsIsStandard(t *testing.T) {
	w := DistributedWriteRequest{NodeKey: "k", Queries: map[string][]map[string]string{
		"b": {{"z": "<&>", "a": "é\u2028", "m": "\x01\"\\"}}, "a": nil, "c": {nil, {}}},
		Statuses: map[string]Int{"a": 1}, Messages: map[string]string{"a": "x"}, VigilWait: 5}
	got, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(plainWrite(w))
	if !bytes.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The same rows with columns sorted: byte for byte encoding/json's.
	w.Columns = map[string][]string{"b": {"a", "m", "z"}}
	got, _ = json.Marshal(w)
	if !bytes.Equal(got, want) {
		t.Errorf("sorted columns:\n got  %s\nwant %s", got, want)
	}
}

func TestAppendRowsOrder(t *testing.T) {
	rows := []map[string]string{{"pid": "1", "name": "init", "extra": "x", "another": "y"}, nil}
	got := string(AppendRows(nil, rows, []string{"pid", "name", "pid", "missing"}))
	want := `[{"pid":"1","name":"init","another":"y","extra":"x"},null]`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := string(AppendRows(nil, nil, []string{"a"})); got != "null" {
		t.Errorf("nil rows: %s", got)
	}
	if got := string(AppendRows(nil, []map[string]string{}, nil)); got != "[]" {
		t.Errorf("no rows: %s", got)
	}
}

// The decoder must read what encoding/json reads, value for value.
func TestDistributedWriteDecodesAsEncodingJSON(t *testing.T) {
	for _, body := range []string{
		osqueryWrite,
		`{}`, `null`, ` {"queries":null} `, `{"queries":{}}`, `{"queries":{"a":null}}`,
		`{"queries":{"a":[null,{}]}}`,
		`{"queries":{"a":[{"x":null,"y":"1"}]}}`,
		`{"queries":{"a":[{"x":"1","x":"2","y":"3"}]}}`,
		`{"queries":{"a":[{"x":"1"}],"a":[{"y":"2"}]}}`,
		`{"queries":{"a":[{"x":"1"}]},"queries":{"b":[{"y":"2"}]}}`,
		`{"QUERIES":{"a":[{"x":"1"}]},"Node_Key":"k","VIGIL_WAIT_MS":3}`,
		`{"queries":{"a":[{"k\u00e9y":"v\n\"\\\/\u2028\ud83d\ude00","x":"\ud800"}]}}`,
		"{\"queries\":{\"a\":[{\"bad\xff\":\"\xfe\xfd\",\"ok\":\"caf\xc3\xa9\"}]}}",
		`{"unknown":{"queries":{"a":[1,{"b":[true,false,null,-1.5e3]}]}},"queries":{"q":[{"a":"1"},{"b":"2"}]}}`,
		`{"queries":{"q":[{"a":"1","b":"2"},{"b":"3","a":"4"},{"a":"5"}]}}`,
		`{"statuses":{"a":"2","b":3,"c":""},"messages":{"a":"m"},"vigil_wait_ms":100}`,
	} {
		var got DistributedWriteRequest
		errGot := json.Unmarshal([]byte(body), &got)
		var want plainWrite
		errWant := json.Unmarshal([]byte(body), &want)
		if errGot != nil || errWant != nil {
			t.Errorf("%s: error %v, encoding/json %v", body, errGot, errWant)
			continue
		}
		got.Columns = nil
		if !reflect.DeepEqual(plainWrite(got), want) {
			t.Errorf("%s:\n got %#v\nwant %#v", body, got, want)
		}
	}
}

// Wrong types are refused with where they are: the offset just after the
// value, as encoding/json gives it, and the path to it.
func TestDistributedWriteTypeErrors(t *testing.T) {
	for _, c := range []struct {
		body, field, value string
		offset             int64
	}{
		{`{"queries":{"a":[{"x":1}]}}`, `queries["a"][0]["x"]`, "number", 23},
		{`{"queries":{"a":[{"x":"1"},{"x":true}]}}`, `queries["a"][1]["x"]`, "bool", 36},
		{`{"queries":{"a":[1]}}`, `queries["a"][0]`, "number", 18},
		{`{"queries":{"a":{}}}`, `queries["a"]`, "object", 18},
		{`{"queries":[]}`, "queries", "array", 13},
		{`{"node_key":1}`, "node_key", "number", 13},
		{`{"messages":{"a":2}}`, "messages", "number", 18},
		{`[1]`, "", "array", 3},
	} {
		var w DistributedWriteRequest
		err := json.Unmarshal([]byte(c.body), &w)
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			t.Errorf("%s: %v, want a type error", c.body, err)
			continue
		}
		if te.Field != c.field || te.Value != c.value || te.Offset != c.offset {
			t.Errorf("%s: field %q value %q offset %d, want %q %q %d", c.body, te.Field, te.Value, te.Offset, c.field, c.value, c.offset)
		}
	}
	var w DistributedWriteRequest
	if err := json.Unmarshal([]byte(`{"statuses":{"a":"x"}}`), &w); err == nil || !strings.Contains(err.Error(), `"x" is not an integer`) {
		t.Errorf("bad status: %v", err)
	}
}

// Called directly (not through encoding/json, which checks the syntax
// first), malformed input is an error that says where.
func TestDistributedWriteSyntaxErrorsDirect(t *testing.T) {
	for _, body := range []string{``, `{`, `{"queries"`, `{"queries":{"a":[{"x":"1"`, `{"queries":{"a":[{"x" "1"}]}}`,
		`{"queries":{"a":[{"x":"1"}]}} x`, `{"queries":{"a":[{"x":"1}]}}`, `{"queries":{"a":[{"x":nul}]}}`, `{,}`} {
		var w DistributedWriteRequest
		err := w.UnmarshalJSON([]byte(body))
		if err == nil || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%q: %v", body, err)
		}
	}
}

// FuzzDistributedWrite: for any body, the decoder accepts exactly what
// encoding/json accepts and reads the same values; Columns name the keys
// of each query's first row, in its order; and a write marshalled with
// its Columns decodes back to the same write.
func FuzzDistributedWrite(f *testing.F) {
	f.Add([]byte(osqueryWrite)) // and testdata/fuzz/FuzzDistributedWrite
	f.Fuzz(func(t *testing.T, body []byte) {
		var got DistributedWriteRequest
		errGot := json.Unmarshal(body, &got)
		var want plainWrite
		errWant := json.Unmarshal(body, &want)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("error %v, encoding/json %v", errGot, errWant)
		}
		if errGot != nil {
			return
		}
		cols := got.Columns
		got.Columns = nil
		if !reflect.DeepEqual(plainWrite(got), want) {
			t.Fatalf("got %#v\nwant %#v", got, want)
		}
		for id, c := range cols {
			rows := got.Queries[id]
			if len(c) == 0 || len(rows) == 0 {
				t.Fatalf("query %q: columns %q with %d rows", id, c, len(rows))
			}
			for _, name := range c {
				found := false
				for _, r := range rows {
					if _, ok := r[name]; ok {
						found = true
						break
					}
				}
				if !found {
					t.Fatalf("query %q: column %q in no row", id, name)
				}
			}
		}
		got.Columns = cols
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var back DistributedWriteRequest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("re-reading %s: %v", b, err)
		}
		if !reflect.DeepEqual(back.Queries, got.Queries) {
			t.Fatalf("round trip rows:\n got %#v\nwant %#v", back.Queries, got.Queries)
		}
		for id, c := range cols {
			if bc := back.Columns[id]; !slices.Equal(bc, c) {
				t.Fatalf("query %q: columns %q after a round trip, want %q", id, bc, c)
			}
		}
	})
}

func ExampleDistributedWriteRequest_Columns() {
	var w DistributedWriteRequest
	json.Unmarshal([]byte(`{"node_key":"k","queries":{"q":[{"pid":"1","name":"init"}]},"statuses":{"q":0}}`), &w)
	fmt.Println(w.Columns["q"])
	w.Queries["q"][0]["uid"] = "0" // a key the columns lack comes after them
	b, _ := json.Marshal(w)
	fmt.Println(string(b))
	// Output:
	// [pid name]
	// {"node_key":"k","queries":{"q":[{"pid":"1","name":"init","uid":"0"}]},"statuses":{"q":0}}
}

// benchWrite is a distributed/write answering one query with n rows of
// processes-like columns, in column order as osquery writes them.
func benchWrite(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"node_key":"0123456789abcdef0123456789abcdef","queries":{"c0ffee":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"pid":"%d","name":"proc-%d","path":"/usr/bin/proc-%d","cmdline":"/usr/bin/proc-%d --flag value","state":"S","uid":"1000","gid":"1000","parent":"1","start_time":"1764230400","resident_size":"123456"}`, 1000+i, i, i, i)
	}
	b.WriteString(`]},"statuses":{"c0ffee":0},"vigil_wait_ms":300000}`)
	return []byte(b.String())
}

// BenchmarkDistributedWriteDecode compares the ordered decoder with
// encoding/json's map decoding of the same body (the decoding before
// column order was kept), for a one-row and a 100-row answer.
func BenchmarkDistributedWriteDecode(b *testing.B) {
	for _, n := range []int{1, 100} {
		body := benchWrite(n)
		b.Run(fmt.Sprintf("rows=%d/encoding-json", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w plainWrite
				if err := json.Unmarshal(body, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rows=%d/ordered", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var w DistributedWriteRequest
				if err := json.Unmarshal(body, &w); err != nil {
					b.Fatal(err)
				}
				if len(w.Columns["c0ffee"]) != 10 {
					b.Fatalf("columns %q", w.Columns["c0ffee"])
				}
			}
		})
	}
}
