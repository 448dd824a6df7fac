package table

import (
	"context"
	"strings"
	"testing"
)

// TestVersionCollations checks the collations against the cases osquery's
// own tests pin down, through SQL.
func TestVersionCollations(t *testing.T) {
	e := openTest(t, Options{})
	cases := map[string][]string{
		"version": {
			"'1.0' = '1.0'", "'1:0.0' = '1.0.0'", "'2.50^1a' = '2.50~1a'",
			"'1.0' < '1.1'", "'1.1' < '1.a'", "'50.4.1b' < '50.4.1c'", "'1.0.0' < '1.0.0-2'", "'1.0.0-2' < '1:0.0.3'", "'1.12.1' < '1.13'",
			"'1.1' > '1.0'", "'190.10a' > '20.10a'", "'20.10a' > '20.102'", "'57:4' > '6.87.5'", "'98.100.21-1b' > '98.100.21-1a'", "'8.11' > '8.10.24'",
			"'1.10' > '1.9'",
		},
		"version_arch": {
			"'1.0' = '1.0-4'", "'4:2' = '4:2-1'",
			"'1.6.1-9' < '1.6.1-10'", "'20220713-1' < '20221123-1'", "'2-2pre' < '2-2rc'", "'2.38-6' < '2.39-4'",
			"'41.1-2' < '43alpha+r8+g1de47dbc-1'", "'1:42.3.1-1' < '1:43.2-1'", "'42.3-1' < '43.2-1'",
			"'3.46.7-1' > '3.44.1-1'", "'6.0.12.arch1-1' > '5.18.14.arch1-1'", "'3:0.164.r3095.baee400-4' > '3:0.164.r3081.19856cc-2'",
			"'0.23.90-1' > '0.23.1-9'", "'1:1.2.13-2' > '4.2.1'",
		},
		"version_dpkg": {
			"'1.0-0' = '1.0-0'", "'1:2.0-10' = '1:2.0-10'",
			"'22.07.5-2ubuntu1.3' < '22.07.5-2ubuntu1.4'", "'2.38-4ubuntu2.1' < '2.38-4ubuntu2.2'",
			"'2.5.13+dfsg-0ubuntu0.22.04.1' < '2.5.14+dfsg-0ubuntu0.22.04.2'",
			"'1.21.1ubuntu2.2' > '1.21.1ubuntu2.1'", "'3.0.2-0ubuntu1.10' > '3.0.2-0ubuntu1.8'", "'2:8.2.3995-1ubuntu2.9' > '2:8.2.3995-1ubuntu2.3'",
		},
		"version_rhel": {
			"'0.5.0~rc1^202' = '0.5.0~rc1^202'",
			"'1.0.0~rc2^2021' < '1.0.0'", "'1.0.1' < '1.0.1^2021'", "'1.0.1^2021' < '1.0.1.security1'", "'1.0.1' < 'pkg-1.0.1.security1'",
			"'1.1.0~BETA2' < '1.1.0~CR1'", "'1.1.0.2021.SP1' < '1.1.0.2021.SP1_CP1'", "'9.11.4-26.P2.el7_9.10' < '32:9.11.4-26.P2.el7_9.13'",
			"'1:1.8.0.352.b08-2.el7_9' < '1:1.8.0.372.b07-1.el7_9'", "'5.6.0-1.linux' < '5.9.1-1.linux'",
			"'1.0.0~rc2' > '1.0.0~rc1'", "'1.0.0' > '1.0.0~rc2'", "'1.1.0~BETA' > '1.0.1.security1'", "'1.1.0.20201001.GA1' > '1.1.0~CR1'",
			"'1.0.0~rc2^20210101gf00fabd' > '1.0.0~rc2'", "'1.0.0' > '1.0.0~rc2^20210101gf00fabd'", "'1.0.1.security1' > '1.0.1^20210203gbbbccc0'",
		},
	}
	for coll, exprs := range cases {
		var cols []string
		for _, x := range exprs {
			cols = append(cols, x+" COLLATE "+coll)
		}
		res, err := e.Query(context.Background(), "SELECT "+strings.Join(cols, ", "))
		if err != nil {
			t.Fatalf("%s: %v", coll, err)
		}
		for i, c := range res.Columns {
			if v := res.Rows[0][c]; v != "1" {
				t.Errorf("%s: %s is %s", coll, exprs[i], v)
			}
		}
	}
	wantRows(t, e, `SELECT version_compare('1.0', '1.0') AS t0, version_compare('1:2.0-10', '1:2.0-10', 'DPKG') AS t1,
		version_compare('4:1.1.0', '4:1.1.0-3', 'arCH') AS t2, version_compare('50.4.1b', '50.4.1c') AS t3,
		version_compare('1.0.0~rc2^2021', '1.0.0', 'RHEL') AS t5, version_compare('1.0.1.1', '1.0.1^2021', 'rhel') AS t7,
		version_compare('1:1.2.13-2', '4.2.1', 'ARCH') AS t9, version_compare('106.32.1', '106:32.1') AS t10`,
		row("t0", "0", "t1", "0", "t2", "0", "t3", "-1", "t5", "-1", "t7", "1", "t9", "1", "t10", "0"))
	if _, err := e.Query(context.Background(), "SELECT version_compare('1', '2', 'BSD')"); err == nil || !strings.Contains(err.Error(), "ARCH, DPKG, RHEL") {
		t.Errorf("bad flavour: %v", err)
	}
}

// TestVersionCollationOnColumn: os_version.version is declared COLLATE
// version, so comparisons on it need no COLLATE clause.
func TestVersionCollationOnColumn(t *testing.T) {
	e := fixtureEngine(t) // os_version.version is "12 (bookworm)"
	wantRows(t, e, "SELECT major FROM os_version WHERE version > '9'", row("major", "12"))
	wantRows(t, e, "SELECT major FROM os_version WHERE version < '9'")
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1.0~rc1", "1.0")
	f.Add("1:2.3-4", "2.3^5")
	f.Fuzz(func(t *testing.T, a, b string) {
		for name, rules := range versionCollations {
			if compareVersions(a, a, rules) != 0 {
				t.Fatalf("%s: %q differs from itself", name, a)
			}
			ab, ba := compareVersions(a, b, rules), compareVersions(b, a, rules)
			if sign(ab) != -sign(ba) {
				t.Fatalf("%s: cmp(%q, %q) = %d but cmp(%q, %q) = %d", name, a, b, ab, b, a, ba)
			}
		}
	})
}
