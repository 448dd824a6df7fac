package store

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestEncodeColumns(t *testing.T) {
	cases := map[string]map[string]string{
		`{}`:                       nil,
		`{"a":"1","b":""}`:         {"b": "", "a": "1"},
		`{"q":"\"\\\n\r\t\u0001"}`: {"q": "\"\\\n\r\t\x01"},
		`{"u":"ünï ✓ <&>"}`:        {"u": "ünï ✓ <&>"},
		"{\"bad\":\"a\uFFFDb\"}":   {"bad": "a\xffb"},
	}
	for want, in := range cases {
		if got := EncodeColumns(in); got != want {
			t.Errorf("EncodeColumns(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzEncodeColumns: the encoding is valid JSON that decodes to the same
// map (invalid UTF-8 replaced, as encoding/json does) and is canonical.
func FuzzEncodeColumns(f *testing.F) {
	f.Add("pid", "42", "cmdline", "sh -c \"echo \\x\"\n")
	f.Add("", "\xff\x00", "\u2028", "</script>")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := map[string]string{k1: v1, k2: v2}
		enc := EncodeColumns(in)
		if !json.Valid([]byte(enc)) {
			t.Fatalf("invalid JSON %q", enc)
		}
		got, err := DecodeColumns(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.ValidString(k1) || !utf8.ValidString(k2) {
			return // keys may collide once replaced; validity is all that holds
		}
		want := map[string]string{}
		for k, v := range in {
			want[k] = string([]rune(v)) // each invalid byte becomes U+FFFD
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %q, want %q", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("decoded[%q] = %q, want %q", k, got[k], v)
			}
		}
		// Canonical: re-encoding the decoded map gives the same text.
		if EncodeColumns(got) != enc {
			t.Fatalf("not canonical: %s vs %s", EncodeColumns(got), enc)
		}
	})
}
