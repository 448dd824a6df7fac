package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestQueryStreamColumnOrder: `vigil query` prints each row's columns in
// the order the server sent them (osquery's is the SELECT list's), or in
// the event's column list when it has one, in text and in --json.
func TestQueryStreamColumnOrder(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/queries" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.Header.Get("Accept") != "text/event-stream" {
			http.Error(w, `{"error":"unexpected request"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "event: created\ndata: {\"id\":\"q1\",\"total\":2,\"pending\":2,\"offline\":0}\n\n")
		fmt.Fprint(w, "event: result\ndata: {\"host_id\":\"h1\",\"hostname\":\"web-1\",\"rows\":[{\"pid\":\"42\",\"name\":\"sleep\",\"cmdline\":\"sleep 300\",\"uid\":null}]}\n\n")
		fmt.Fprint(w, ": keep-alive\n\n")
		fmt.Fprint(w, "event: result\ndata: {\"host_id\":\"h2\",\"hostname\":\"web-2\",\"columns\":[\"name\",\"pid\"],\"rows\":[{\"pid\":\"7\",\"name\":\"init\"}]}\n\n")
		fmt.Fprint(w, "event: status\ndata: {\"host_id\":\"h1\",\"hostname\":\"web-1\",\"status\":\"ok\"}\n\n")
		fmt.Fprint(w, "event: status\ndata: {\"host_id\":\"h2\",\"hostname\":\"web-2\",\"status\":\"ok\"}\n\n")
		fmt.Fprint(w, "event: done\ndata: {\"total\":2,\"ok\":2}\n\n")
	}))
	defer srv.Close()
	c := &client{base: srv.URL, token: "tok", http: srv.Client()}

	query := func(asJSON bool, out, errb *bytes.Buffer) error {
		resp, err := c.openStream(context.Background(), http.MethodPost, "/api/v1/queries", map[string]any{"sql": "SELECT 1", "all": true})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return printEvents(resp.Body, asJSON, out, errb)
	}
	var out, errb bytes.Buffer
	if err := query(false, &out, &errb); err != nil {
		t.Fatal(err)
	}
	want := "web-1\tpid=\"42\" name=\"sleep\" cmdline=\"sleep 300\" uid=\"\"\nweb-2\tname=\"init\" pid=\"7\"\n"
	if out.String() != want {
		t.Errorf("text output:\n%s\nwant:\n%s", out.String(), want)
	}
	for _, w := range []string{"live query q1 sent to 2 host(s)", "done: 2 host(s), 2 ok"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr %q lacks %q", errb.String(), w)
		}
	}

	out.Reset()
	if err := query(true, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`"row":{"pid":"42","name":"sleep","cmdline":"sleep 300","uid":""}`,
		`"row":{"name":"init","pid":"7"}`,
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("--json output lacks %s:\n%s", w, out.String())
		}
	}
}

func TestOrderedRowErrors(t *testing.T) {
	for in, want := range map[string]string{
		`[]`:              "want a JSON object",
		`{"a":1}`:         `column "a"`,
		`{"a":"x"`:        "unexpected end",
		`{"a":{"b":"c"}}`: `column "a"`,
	} {
		var r orderedRow
		if err := json.Unmarshal([]byte(in), &r); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one with %q", in, err, want)
		}
	}
}

// FuzzOrderedRow: whatever decodes as a row decodes to the values a map
// would hold, each key once in first-seen order, and encodes back to the
// same row.
func FuzzOrderedRow(f *testing.F) {
	for _, s := range []string{`{"pid":"1","name":"init"}`, `{}`, `{"a":null,"a":"2"}`, `{"\u00e9":"x\n"}`, `[]`, `{"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r orderedRow
		err := json.Unmarshal(b, &r)
		var m map[string]*string
		stdErr := json.Unmarshal(b, &m)
		if (err == nil) != (stdErr == nil && m != nil) {
			t.Fatalf("%q: row error %v, map error %v (map %v)", b, err, stdErr, m)
		}
		if err != nil {
			return
		}
		keys := slices.Clone(r.keys)
		slices.Sort(keys)
		if len(slices.Compact(keys)) != len(r.keys) || len(r.keys) != len(m) {
			t.Fatalf("%q: keys %q, map %v", b, r.keys, m)
		}
		for k, v := range m {
			want := ""
			if v != nil {
				want = *v
			}
			if got, ok := r.values[k]; !ok || got != want {
				t.Fatalf("%q: %q = %q, map has %q", b, k, got, want)
			}
		}
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back orderedRow
		if err := json.Unmarshal(enc, &back); err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("%q: round trip %s gave %v, %v", b, enc, back, err)
		}
	})
}
