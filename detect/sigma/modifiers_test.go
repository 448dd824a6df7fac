package sigma_test

import (
	"context"
	"encoding/base64"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/vigilhq/vigil/detect/internal/duckdbtest"
	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

// testTable has one column of each type the modifiers work on.
var testTable = schema.Table{
	Name: "sigma_test_events",
	Columns: []schema.Column{
		{Name: "cmd", Type: schema.Text},
		{Name: "other", Type: schema.Text},
		{Name: "num", Type: schema.BigInt},
		{Name: "ts", Type: schema.Timestamp},
		{Name: "ip", Type: schema.Text},
	},
	Fields: map[string]string{"Cmd": "cmd", "Other": "other", "Num": "num", "Time": "ts", "Ip": "ip"},
}

// testMapping maps every logsource to testTable.
type testMapping struct{}

func (testMapping) Table(sigma.Logsource) (schema.Table, bool) { return testTable, true }
func (testMapping) Column(t schema.Table, f string) (schema.Column, bool) {
	name, ok := t.Fields[f]
	if !ok {
		return schema.Column{}, false
	}
	for _, c := range t.AllColumns() {
		if c.Name == name {
			return c, true
		}
	}
	return schema.Column{}, false
}
func (testMapping) Fields(t schema.Table) []string {
	var out []string
	for f := range t.Fields {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
func (testMapping) KeywordColumns(t schema.Table) []schema.Column { return t.Columns[:2] }

var testPlaceholders = map[string][]string{"Admins": {"root", "adm_*"}, "Empty": {}}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func le16(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

func be16(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return string(b)
}

func at(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t
}

var modifierCases = []matchCase{
	{"windash",
		"  s:\n    Cmd|windash|contains: ' -enc '\n  condition: s",
		[]row{{"cmd": "powershell -enc AAA"}, {"cmd": "powershell /enc AAA"}, {"cmd": "powershell \u2013enc AAA"},
			{"cmd": "powershell \u2014enc AAA"}, {"cmd": "powershell \u2015enc AAA"}, {"cmd": "powershell xenc AAA"}, {"cmd": "powershell -ENC AAA"}},
		[]int{1, 2, 3, 4, 5, 7}},
	{"windash inside words",
		"  s:\n    Cmd|windash: 'a-b-c'\n  condition: s",
		[]row{{"cmd": "a/b\u2013c"}, {"cmd": "a-b-c"}, {"cmd": "a_b-c"}}, []int{1, 2}},
	{"re is case-sensitive and unanchored",
		"  s:\n    Cmd|re: 'b.d'\n  condition: s",
		[]row{{"cmd": "abcde"}, {"cmd": "ABCDE"}, {"cmd": "bd"}}, []int{1}},
	{"re with i",
		"  s:\n    Cmd|re|i: '^abc'\n  condition: s",
		[]row{{"cmd": "ABCdef"}, {"cmd": "xabc"}}, []int{1}},
	{"re dot stops at newlines unless s",
		"  s:\n    Cmd|re: 'a.c'\n  condition: s",
		[]row{{"cmd": "a\nc"}, {"cmd": "abc"}}, []int{2}},
	{"re with s",
		"  s:\n    Cmd|re|s: 'a.c'\n  condition: s",
		[]row{{"cmd": "a\nc"}, {"cmd": "abc"}}, []int{1, 2}},
	{"re with m",
		"  s:\n    Cmd|re|m: '^b$'\n  condition: s",
		[]row{{"cmd": "a\nb\nc"}, {"cmd": "abc"}}, []int{1}},
	{"base64",
		"  s:\n    Cmd|base64|contains: 'evil'\n  condition: s",
		[]row{{"cmd": "run " + b64("evil")}, {"cmd": "run " + b64("xevil")}}, []int{1}},
	{"base64offset finds every alignment",
		"  s:\n    Cmd|base64offset|contains: 'evil command'\n  condition: s",
		[]row{{"cmd": b64("evil command here")}, {"cmd": b64("x evil command here")}, {"cmd": b64("xy evil command")},
			{"cmd": b64("xyz evil command!")}, {"cmd": b64("nothing to see")}},
		[]int{1, 2, 3, 4}},
	{"wide then base64offset",
		"  s:\n    Cmd|wide|base64offset|contains: 'ping'\n  condition: s",
		[]row{{"cmd": "-e " + b64(le16("ping 1.2.3.4"))}, {"cmd": "-e " + b64(le16("x ping"))}, {"cmd": "-e " + b64(le16("xy ping"))},
			{"cmd": "-e " + b64("ping")}},
		[]int{1, 2, 3}},
	{"utf16le utf16be utf16",
		"  le:\n    Cmd|utf16le|base64: 'hi'\n  be:\n    Cmd|utf16be|base64: 'hi'\n  bom:\n    Cmd|utf16|base64: 'hi'\n  condition: 1 of them",
		[]row{{"cmd": b64(le16("hi"))}, {"cmd": b64(be16("hi"))}, {"cmd": b64("\xff\xfe" + le16("hi"))}, {"cmd": b64("hi")}},
		[]int{1, 2, 3}},
	{"lt lte gt gte",
		"  a:\n    Num|lt: 10\n  b:\n    Num|gte: 100\n  condition: a or b",
		[]row{{"num": int64(9)}, {"num": int64(10)}, {"num": int64(99)}, {"num": int64(100)}, {"num": nil}},
		[]int{1, 4}},
	{"lte and gt together",
		"  s:\n    - Num|lte: 1\n    - Num|gt: 1000\n  condition: s",
		[]row{{"num": int64(1)}, {"num": int64(2)}, {"num": int64(1001)}},
		[]int{1, 3}},
	{"numeric comparison on text",
		"  s:\n    Cmd|gt: 5\n  condition: s",
		[]row{{"cmd": "10"}, {"cmd": "2"}, {"cmd": "abc"}}, []int{1}},
	{"hour",
		"  s:\n    Time|hour: 3\n  condition: s",
		[]row{{"ts": at("2026-11-27 03:59:00")}, {"ts": at("2026-11-27 04:00:00")}}, []int{1}},
	{"minute day month year week",
		"  s:\n    Time|minute: 5\n    Time|day: 27\n    Time|month: 11\n    Time|year: 2026\n    Time|week: 48\n  condition: s",
		[]row{{"ts": at("2026-11-27 03:05:00")}, {"ts": at("2026-11-27 03:06:00")}, {"ts": at("2025-11-27 03:05:00")}}, []int{1}},
	{"time with comparison",
		"  s:\n    Time|hour|gte: 22\n  condition: s",
		[]row{{"ts": at("2026-11-27 21:00:00")}, {"ts": at("2026-11-27 23:00:00")}}, []int{2}},
	{"cidr IPv4",
		"  s:\n    Ip|cidr:\n      - 10.0.0.0/8\n      - 172.16.0.0/12\n      - 192.168.1.0/24\n      - 1.2.3.4/32\n      - 100.64.0.0/30\n  condition: s",
		[]row{{"ip": "10.1.2.3"}, {"ip": "172.31.255.1"}, {"ip": "172.32.0.1"}, {"ip": "192.168.1.77"}, {"ip": "192.168.10.1"},
			{"ip": "1.2.3.4"}, {"ip": "1.2.3.40"}, {"ip": "100.64.0.3"}, {"ip": "100.64.0.4"}, {"ip": "110.1.1.1"}},
		[]int{1, 2, 4, 6, 8}},
	{"cidr IPv6 in any text form",
		"  s:\n    Ip|cidr:\n      - 2001:db8::/32\n      - fe80::/10\n  condition: s",
		[]row{{"ip": "2001:DB8:0:0::1"}, {"ip": "2001:0db8:ffff::"}, {"ip": "2001:db9::1"}, {"ip": "fe80::1%eth0"},
			{"ip": "febf:1:2:3:4:5:6:7"}, {"ip": "fec0::1"}, {"ip": "10.0.0.1"}, {"ip": "::"}},
		[]int{1, 2, 4, 5}},
	{"expand",
		"  s:\n    Cmd|expand: '%Admins%'\n  condition: s",
		[]row{{"cmd": "root"}, {"cmd": "adm_bob"}, {"cmd": "bob"}, {"cmd": "%Admins%"}}, []int{1, 2}},
	{"expand keeps escaped percent",
		"  s:\n    Cmd|expand: '\\%x%Admins%'\n  condition: s",
		[]row{{"cmd": "%xroot"}, {"cmd": "xroot"}}, []int{1}},
	{"fieldref",
		"  s:\n    Cmd|fieldref: Other\n  condition: s",
		[]row{{"cmd": "abc", "other": "ABC"}, {"cmd": "abc", "other": "abd"}, {"cmd": "abc"}}, []int{1}},
	{"fieldref startswith",
		"  s:\n    Cmd|fieldref|startswith: Other\n  condition: s",
		[]row{{"cmd": "abcdef", "other": "ABC"}, {"cmd": "xabc", "other": "abc"}}, []int{1}},
	{"exists",
		"  a:\n    Other|exists: true\n  b:\n    Num|exists: false\n  condition: a and b",
		[]row{{"other": "x"}, {"other": "x", "num": int64(1)}, {"num": int64(1)}}, []int{1}},
	{"cased",
		"  s:\n    Cmd|cased|contains: 'Evil'\n  condition: s",
		[]row{{"cmd": "x Evil y"}, {"cmd": "x evil y"}}, []int{1}},
	{"cased exact",
		"  s:\n    Cmd|cased: 'Evil'\n  condition: s",
		[]row{{"cmd": "Evil"}, {"cmd": "EVIL"}}, []int{1}},
	{"neq keeps NULLs",
		"  s:\n    Cmd|neq: 'x'\n  condition: s",
		[]row{{"cmd": "x"}, {"cmd": "X"}, {"cmd": "y"}, {"other": "z"}}, []int{3, 4}},
	{"neq on numbers",
		"  s:\n    Num|neq: 5\n  condition: s",
		[]row{{"num": int64(5)}, {"num": int64(6)}}, []int{2}},
	{"keywords with all",
		"  k:\n    '|all':\n      - alpha\n      - beta\n  condition: k",
		[]row{{"cmd": "alpha", "other": "beta"}, {"cmd": "alpha"}, {"other": "beta alpha"}}, []int{1, 3}},
}

func TestModifiersOnDuckDB(t *testing.T) {
	db := duckdbtest.Open(t)
	db.CreateTable(t, testTable)
	for _, tc := range modifierCases {
		t.Run(tc.name, func(t *testing.T) {
			src := "title: t\nlogsource:\n  category: test\ndetection:\n" + tc.detection + "\n"
			r, err := sigma.ParseOne("t.yml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			q, err := sigma.Compile(r, sigma.Options{Mapping: testMapping{}, Placeholders: testPlaceholders})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.SQL.Exec("DELETE FROM " + testTable.Name); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, r := range tc.rows {
				seqs = append(seqs, db.Insert(t, testTable.Name, r))
			}
			res, err := db.Query(context.Background(), "SELECT seq FROM "+q.Table+" WHERE "+q.Where+" ORDER BY seq")
			if err != nil {
				t.Fatalf("%v\nWHERE %s", err, q.Where)
			}
			var got []int
			for _, r := range res.Rows {
				got = append(got, slices.Index(seqs, r[0].(int64))+1)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("matched rows %v, want %v\nWHERE %s", got, tc.want, q.Where)
			}
		})
	}
}

func TestModifierErrors(t *testing.T) {
	cases := []struct{ name, detection, want string }{
		{"unknown placeholder", "  s:\n    Cmd|expand: '%Nobody%'\n  condition: s", "placeholder %Nobody% has no configured values"},
		{"placeholder without values", "  s:\n    Cmd|expand: '%Empty%'\n  condition: s", "placeholder %Empty% has no configured values"},
		{"base64 of a wildcard", "  s:\n    Cmd|contains|base64: 'a'\n  condition: s", `modifier "base64" cannot encode wildcards`},
		{"utf16 alone", "  s:\n    Cmd|wide: 'a'\n  condition: s", "value is not text after its modifiers"},
		{"regex flag without re", "  s:\n    Cmd|i: 'a'\n  condition: s", `modifier "i" is a flag of "re"`},
		{"re and contains", "  s:\n    Cmd|re|contains: 'a'\n  condition: s", "cannot be combined"},
		{"number expected", "  s:\n    Num|gt: 'abc'\n  condition: s", `"abc" is not a number`},
		{"time on text", "  s:\n    Cmd|hour: 3\n  condition: s", `modifier "hour" needs a timestamp column`},
		{"bad cidr", "  s:\n    Ip|cidr: 10.0.0.0/33\n  condition: s", `invalid CIDR range "10.0.0.0/33"`},
		{"exists needs a boolean", "  s:\n    Cmd|exists: maybe\n  condition: s", `exists takes true or false`},
		{"fieldref to unknown field", "  s:\n    Cmd|fieldref: Nope\n  condition: s", `field "Nope" has no column`},
		{"duplicate modifier", "  s:\n    Cmd|contains|contains: a\n  condition: s", `modifier "contains" given twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "title: t\nlogsource:\n  category: test\ndetection:\n" + tc.detection + "\n"
			r, err := sigma.ParseOne("t.yml", []byte(src))
			if err == nil {
				_, err = sigma.Compile(r, sigma.Options{Mapping: testMapping{}, Placeholders: testPlaceholders})
			}
			if err == nil || !containsStr(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if err != nil && !containsStr(err.Error(), "t.yml:6:") {
				t.Errorf("error %v does not name file and line", err)
			}
		})
	}
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }
