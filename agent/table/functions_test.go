package table

import (
	"context"
	"strings"
	"testing"
)

// TestSQLFunctions runs osquery's SQL functions through the engine.
func TestSQLFunctions(t *testing.T) {
	e := openTest(t, Options{})
	for _, tc := range []struct{ sql, want string }{
		{"SELECT split('192.168.0.1', '.', 1)", "168"},
		{"SELECT split('192.168.0.1', '.0', 0)", "192"},
		{"SELECT split(' a , b ,, c', ',', 2)", "c"},
		{"SELECT split('a.b', '.', 5)", ""},
		{"SELECT split(NULL, '.', 0)", ""},
		{"SELECT regex_split('192.168.0.1', '\\.0', 0)", "192.168"},
		{"SELECT regex_split('a1b22c', '[0-9]+', 2)", "c"},
		{"SELECT regex_match('user=alice uid=1000', 'uid=([0-9]+)', 1)", "1000"},
		{"SELECT regex_match('user=alice', 'uid=([0-9]+)', 1)", ""},
		{"SELECT regex_match('abc', 'b', 0)", "b"},
		{"SELECT inet_aton('192.168.0.1')", "3232235521"},
		{"SELECT inet_aton('::1')", ""},
		{"SELECT inet_aton('nope')", ""},
		{"SELECT concat('a', NULL, 1, 'b')", "a1b"},
		{"SELECT concat_ws('-', 'a', 'b', 'c')", "a-b-c"},
		{"SELECT md5('abc')", "900150983cd24fb0d6963f7d28e17f72"},
		{"SELECT sha1('abc')", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"SELECT sha256('abc')", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"SELECT to_base64('hello')", "aGVsbG8="},
		{"SELECT from_base64('aGVsbG8=')", "hello"},
		{"SELECT from_base64('aGVsbG8')", "hello"},
		{"SELECT conditional_to_base64('plain text')", "plain text"},
		{"SELECT conditional_to_base64(char(1, 2))", "AQI="},
		{"SELECT in_cidr_block('10.0.0.0/24', '10.0.0.7')", "1"},
		{"SELECT in_cidr_block('10.0.0.0/24', '10.0.1.7')", "0"},
		{"SELECT in_cidr_block('10.0.0.0/24', '10.0.0.255')", "0"},
		{"SELECT in_cidr_block('10.0.0.5/32', '10.0.0.5')", "1"},
		{"SELECT in_cidr_block('fd00::/8', 'fd12::1')", "1"},
		{"SELECT community_id_v1('66.35.250.204', '128.232.110.120', 80, 34855, 6, 0)", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"SELECT community_id_v1('128.232.110.120', '66.35.250.204', 34855, 80, 6)", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"SELECT community_id_v1('66.35.250.204', '128.232.110.120', 80, 34855, 6, 1)", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
		{"SELECT community_id_v1('127.0.0.1', 'fe80::14b0:de4a:f8e8:522f', 64, 10, 6)", "1:Jww+Ua4pSUNl9TvSUwvSHL4n93w="},
		{"SELECT community_id_v1('192.168.170.8', '192.168.170.56', 7, 80, 132, 0)", "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ="},
		{"SELECT community_id_v1('8.8.8.8', '192.168.1.52', 53, 54585, 17, 1)", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
		{"SELECT community_id_v1('192.168.1.52', 'foo', 10, 53, 17, 0)", ""},
		{"SELECT community_id_v1('192.168.1.52', '192.168.1.1', 10, 53, 17, 100000000)", ""},
	} {
		res, err := e.Query(context.Background(), tc.sql+" AS v")
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if got := res.Rows[0]["v"]; got != tc.want {
			t.Errorf("%s = %q, want %q", tc.sql, got, tc.want)
		}
	}
	for _, tc := range []struct{ sql, want string }{
		{"SELECT split('a', '', 0)", "Invalid input to split function"},
		{"SELECT regex_match('a', '(', 0)", "Invalid regex"},
		{"SELECT regex_match('a', '" + strings.Repeat("a", 300) + "', 0)", "too big"},
		{"SELECT in_cidr_block('10.0.0.0/24', 'x')", "IP address cannot be parsed"},
		{"SELECT in_cidr_block('fd00::/8', '10.0.0.1')", "CIDR for IP address v4 cannot be parsed"},
		{"SELECT community_id_v1_strict('192.168.1.52', 'foo', 10, 53, 17, 0)", "daddr cannot be parsed"},
		{"SELECT community_id_v1_strict('192.168.1.52', '192.168.1.1', 10, 53, 17, 100000000)", "seed must fit"},
	} {
		_, err := e.Query(context.Background(), tc.sql)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.sql, err, tc.want)
		}
	}
	// Functions work over table columns too.
	res := query(t, e, "SELECT count(*) AS n FROM users WHERE split(shell, '/', 0) IS NOT NULL")
	if res.Rows[0]["n"] == "0" {
		t.Error("split over users.shell matched nothing")
	}
}

func TestRenderDoubles(t *testing.T) {
	e := openTest(t, Options{})
	for _, tc := range []struct{ sql, want string }{
		{"SELECT 1.0 AS v", "1.0"},
		{"SELECT 0.1 + 0.2 AS v", "0.3"},
		{"SELECT 2.5 AS v", "2.5"},
		{"SELECT 1e20 AS v", "1e+20.0"},
		{"SELECT 1 AS v", "1"},
		{"SELECT NULL AS v", ""},
		{"SELECT x'414243' AS v", "ABC"},
	} {
		res := query(t, e, tc.sql)
		if got := res.Rows[0]["v"]; got != tc.want {
			t.Errorf("%s rendered %q, want %q", tc.sql, got, tc.want)
		}
	}
}
