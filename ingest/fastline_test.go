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
