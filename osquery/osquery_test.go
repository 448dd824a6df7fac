package osquery

import (
	"encoding/json"
	"testing"
	"time"
)

func TestIntAcceptsNumbersAndStrings(t *testing.T) {
	for in, want := range map[string]Int{`12`: 12, `"12"`: 12, `""`: 0, `null`: 0, `-3`: -3, `"1462228052"`: 1462228052} {
		var n Int
		if err := json.Unmarshal([]byte(in), &n); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if n != want {
			t.Errorf("%s: got %d, want %d", in, n, want)
		}
	}
	for _, bad := range []string{`"x"`, `1.5`, `true`, `{}`} {
		var n Int
		if err := json.Unmarshal([]byte(bad), &n); err == nil {
			t.Errorf("%s: accepted as %d", bad, n)
		}
	}
}

// The documented event-format example must decode field for field.
func TestResultLineDocumentedEventFormat(t *testing.T) {
	line := `{"action":"added","columns":{"name":"osqueryd","path":"/opt/osquery/bin/osqueryd","pid":"97830"},
	"name":"processes","hostname":"hostname.local","calendarTime":"Tue Sep 30 17:37:30 2014",
	"unixTime":"1412123850","epoch":"314159265","counter":"1","numerics":false}`
	var r ResultLine
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	if r.Action != ActionAdded || r.Name != "processes" || r.UnixTime != 1412123850 || r.Epoch != 314159265 ||
		r.Counter != 1 || r.Columns["pid"] != "97830" {
		t.Fatalf("decoded %+v", r)
	}
	snap := `{"action":"snapshot","snapshot":[{"pid":"1"},{"pid":"51"}],"name":"process_snapshot",
	"hostIdentifier":"hostname.local","unixTime":1462228052,"epoch":314159265,"counter":1,"numerics":false}`
	if err := json.Unmarshal([]byte(snap), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Snapshot) != 2 || r.Snapshot[1]["pid"] != "51" || r.HostIdentifier != "hostname.local" {
		t.Fatalf("decoded %+v", r)
	}
}

func TestCalendarTime(t *testing.T) {
	got := CalendarTime(time.Date(2014, 9, 30, 17, 37, 30, 0, time.UTC))
	if got != "Tue Sep 30 17:37:30 2014 UTC" {
		t.Fatalf("got %q", got)
	}
}

func TestScheduledQueryRemovedDefault(t *testing.T) {
	var q ScheduledQuery
	if err := json.Unmarshal([]byte(`{"query":"select 1","interval":10}`), &q); err != nil {
		t.Fatal(err)
	}
	if !q.LogsRemoved() {
		t.Error("removed must default to true")
	}
	if err := json.Unmarshal([]byte(`{"query":"select 1","interval":10,"removed":false}`), &q); err != nil {
		t.Fatal(err)
	}
	if q.LogsRemoved() {
		t.Error("removed:false ignored")
	}
}

func FuzzResultLine(f *testing.F) {
	f.Add([]byte(`{"name":"q","unixTime":"1","epoch":0,"counter":"2","action":"added","columns":{"a":"b"}}`))
	f.Add([]byte(`{"diffResults":{"added":[{"a":"1"}],"removed":[]},"name":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r ResultLine
		if json.Unmarshal(b, &r) != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same line.
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var again ResultLine
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if again.Name != r.Name || again.UnixTime != r.UnixTime || again.Counter != r.Counter || len(again.Columns) != len(r.Columns) {
			t.Fatalf("round trip changed the line: %+v vs %+v", r, again)
		}
	})
}
