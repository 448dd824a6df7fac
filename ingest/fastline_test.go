package ingest

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vigilhq/vigil/osquery"
)

// The hand-written line decoder either gives up (errFallback or a syntax
// error) or reads exactly what encoding/json reads.
func TestLineDecoderMatchesEncodingJSON(t *testing.T) {
	lines := []string{
		`{"name":"q","unixTime":1,"epoch":2,"counter":"3","action":"added","columns":{"a":"1","b":""}}`,
		`{"name":"q","unixTime":"","counter":null,"action":"added","columns":{"k\u00e9y":"v\n\"x\"","a":"1","a":"2"}}`,
		`{"name":"q","unixTime":1,"action":"snapshot","snapshot":[{"a":"1"},{}],"decorations":{"h":"x"},"extra":[1,{"x":null}]}`,
		`{"name":"q","unixTime":1,"diffResults":{"added":[{"a":"1"}],"removed":null,"other":1}}`,
		`{"name":"q","unixTime":1,"diffResults":null,"numerics":true,"hostIdentifier":null}`,
		`{"name":"ü","unixTime":-5,"counter":9223372036854775807,"action":"added","columns":{"x":"y"}}`,
		// Shapes the fast decoder leaves to the general one.
		`{"Name":"q","unixTime":1,"action":"added","columns":{"a":"1"}}`,
		`{"name":"q","name":"r","unixTime":1,"action":"added","columns":{"a":"1"}}`,
		`{"name":"q","unixTime":1.5,"action":"added","columns":{"a":"1"}}`,
		`{"name":"q","unixTime":"+1","action":"added","columns":{"a":"1"}}`,
		`{"name":"q","unixTime":1,"action":"added","columns":{"a":1}}`,
		`{"name":"q","unixTime":1,"action":"snapshot","snapshot":[null]}`,
		"{\"name\":\"q\xff\",\"unixTime\":1,\"action\":\"added\",\"columns\":{\"a\":\"1\"}}",
		`{"name":"q","unixTime":1,"action":"added","columns":{"a":"1"}} x`,
		`{"name":"q","unixTime":99999999999999999999,"action":"added","columns":{"a":"1"}}`,
		`{"name":"q",`,
	}
	var d lineDecoder
	fast := 0
	for _, l := range lines {
		var got osquery.ResultLine
		err := d.decode([]byte(l), &got)
		if err != nil {
			continue
		}
		fast++
		var want osquery.ResultLine
		if werr := json.Unmarshal([]byte(l), &want); werr != nil {
			t.Errorf("%s: fast decoder accepted what encoding/json refuses (%v)", l, werr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nfast          %+v\nencoding/json %+v", l, got, want)
		}
	}
	if fast != 6 {
		t.Errorf("fast decoder took %d lines, want the 6 of the common shape", fast)
	}
}

// TestRowMeta: rows in osquery's form (names in order, no spaces, no
// escapes) come with their names and their encoding; others with what is
// still true of them, or nothing.
func TestRowMeta(t *testing.T) {
	for _, c := range []struct {
		line          string
		names, encode []bool // per row
	}{
		{`{"name":"q","action":"added","columns":{"a":"1","b":"x y"},"unixTime":1}`, []bool{true}, []bool{true}},
		{`{"name":"q","action":"added","columns":{"a":"1", "b":"2"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a":"\n","b":"say \"hi\" \\ \u0001\t"},"unixTime":1}`, []bool{true}, []bool{true}},
		{`{"name":"q","action":"added","columns":{"a":"\u00e9"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a":"\b"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a":"\u000a"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a":"\u001F"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a\/":"1"},"unixTime":1}`, []bool{true}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"b":"1","a":"2"},"unixTime":1}`, []bool{false}, []bool{false}},
		{`{"name":"q","action":"added","columns":{"a":"é","b":""},"unixTime":1}`, []bool{true}, []bool{true}},
		{`{"name":"q","action":"snapshot","snapshot":[{"a":"1"},{"a":"2","c":"3"},{"c":"1","a":"2"}],"unixTime":1}`,
			[]bool{true, true, false}, []bool{true, true, false}},
		{`{"name":"q","diffResults":{"added":[{"a":"1"}],"removed":[{"b":"2","a":"1"}]},"unixTime":1}`,
			[]bool{true, false}, []bool{true, false}},
		{`{"name":"q","action":"added","columns":{"a":1,"b":"2"},"unixTime":1}`, []bool{false}, []bool{false}}, // numerics: the general decoder
	} {
		r, err := decodeResult([]byte(c.line))
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		checkMetas(t, r)
		k := 0
		for i := range r.sets {
			for j := range r.sets[i].rows {
				m := r.sets[i].meta(j)
				if (m.names != nil) != c.names[k] || (m.encoded != "") != c.encode[k] {
					t.Errorf("%s: row %d: names %q, encoded %q; want names %v, encoded %v", c.line, k, m.names, m.encoded, c.names[k], c.encode[k])
				}
				k++
			}
		}
		if k != len(c.names) {
			t.Errorf("%s: %d rows, want %d", c.line, k, len(c.names))
		}
	}
	// Rows of one shape share one slice of names.
	r, _ := decodeResult([]byte(`{"name":"q","action":"snapshot","snapshot":[{"a":"1","b":"2"},{"a":"3","b":"4"}],"unixTime":1}`))
	if a, b := r.sets[0].meta(0).names, r.sets[0].meta(1).names; &a[0] != &b[0] {
		t.Error("rows with the same names do not share them")
	}
}
