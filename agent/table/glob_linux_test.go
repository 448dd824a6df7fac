package table

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileGlob checks GLOB on path and directory of file and hash: the same
// expansion as LIKE in GLOB's spelling ('*' within one component, a final
// "**" recursive), case-sensitive.
func TestFileGlob(t *testing.T) {
	e, _ := fileTree(t)
	for _, tc := range []struct{ sql, want string }{
		// One level; GLOB is case-sensitive, so Upper.CONF is left out.
		{"SELECT path FROM file WHERE path GLOB '/etc/*.conf' ORDER BY path", "/etc/a.conf"},
		{"SELECT path FROM file WHERE path GLOB '/etc/*.[Cc][Oo][Nn][Ff]' ORDER BY path", "/etc/Upper.CONF /etc/a.conf"},
		{"SELECT path FROM file WHERE path GLOB '/etc/?.*' ORDER BY path", "/etc/a.conf /etc/b.txt"},
		{"SELECT path FROM file WHERE path GLOB '/etc/[^a-z]*' ORDER BY path", "/etc/Upper.CONF"},
		// Recursive, not following the symlinked directory (as LIKE '%%').
		{"SELECT path FROM file WHERE path GLOB '/etc/sub/**' ORDER BY path", "/etc/sub/c.conf /etc/sub/deep /etc/sub/deep/d.conf /etc/sub/loop"},
		// Wildcards in the middle.
		{"SELECT path FROM file WHERE path GLOB '/*/sub/*.conf'", "/etc/sub/c.conf"},
		{"SELECT path FROM file WHERE path GLOB '/e?c/s*/d*/*'", "/etc/sub/deep/d.conf"},
		// No wildcard: a plain path.
		{"SELECT path FROM file WHERE path GLOB '/etc/b.txt'", "/etc/b.txt"},
		// directory GLOB lists the matching directories' entries.
		{"SELECT path FROM file WHERE directory GLOB '/etc/s?b' ORDER BY path", "/etc/sub/c.conf /etc/sub/deep /etc/sub/loop"},
		{"SELECT path FROM hash WHERE path GLOB '/etc/sub/**' ORDER BY path", "/etc/sub/c.conf /etc/sub/deep/d.conf"},
		{"SELECT path FROM hash WHERE directory GLOB '/etc/sub/d*'", "/etc/sub/deep/d.conf"},
		// Nothing matches: no rows, no error.
		{"SELECT path FROM file WHERE path GLOB '/etc/*.nothing'", ""},
	} {
		if got := paths(query(t, e, tc.sql)); got != tc.want {
			t.Errorf("%s\n got: %s\nwant: %s", tc.sql, got, tc.want)
		}
	}
	wantRows(t, e, "SELECT path, sha256 FROM hash WHERE path GLOB '/etc/a.con[f]'",
		row("path", "/etc/a.conf", "sha256", sha256hex("alpha\n")))

	// A set spanning '/' cannot be honoured: a clear error, not silence.
	_, err := e.Query(context.Background(), "SELECT path FROM file WHERE path GLOB '/etc[/]a.conf'")
	if err == nil || !strings.Contains(err.Error(), `GLOB pattern "/etc[/]a.conf": the set at byte 4 contains '/'`) {
		t.Errorf("set with '/': err = %v", err)
	}
	// A range on path is still no constraint.
	_, err = e.Query(context.Background(), "SELECT path FROM file WHERE path > '/etc'")
	if want := `table "file" requires a constraint on "path" or "directory"`; err == nil || err.Error() != want {
		t.Errorf("range only: err = %v, want %q", err, want)
	}
}

// TestExpandCap checks that LIKE and GLOB expansions stop at
// maxExpandedPaths with an error naming the pattern, and that a query at
// the limit still succeeds.
func TestExpandCap(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 30; i++ {
		d := filepath.Join(root, "data", fmt.Sprintf("d%02d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", j)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := maxExpandedPaths
	t.Cleanup(func() { maxExpandedPaths = old })
	// 30 directories with 3 files each: 120 entries below /data.
	maxExpandedPaths = 120
	e := openTest(t, Options{Root: root})
	for _, q := range []string{
		"SELECT count(*) AS n FROM file WHERE path LIKE '/data/%%'",
		"SELECT count(*) AS n FROM file WHERE path GLOB '/data/**'",
	} {
		if n := query(t, e, q).Rows[0]["n"]; n != "120" {
			t.Errorf("%s: %s rows, want 120", q, n)
		}
	}
	maxExpandedPaths = 119
	for _, tc := range []struct{ sql, want string }{
		{"SELECT count(*) FROM file WHERE path LIKE '/data/%%'", `LIKE pattern "/data/%%" matches more than 119 paths; narrow it`},
		{"SELECT count(*) FROM hash WHERE path GLOB '/data/**'", `GLOB pattern "/data/**" matches more than 119 paths; narrow it`},
		{"SELECT count(*) FROM hash WHERE directory LIKE '/data/%%'", `LIKE pattern "/data/%%" matches more than 119 paths`},
	} {
		_, err := e.Query(context.Background(), tc.sql)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.sql, err, tc.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"*c", "abc", true}, {"a?c", "abc", true},
		{"a?c", "ac", false}, {"A*", "abc", false}, {"*b*", "abc", true}, {"*x*", "abc", false},
		{"*", "a/b", true}, {"é?", "éx", true}, {"?", "é", true},
		{"[abc]", "b", true}, {"[abc]", "d", false}, {"[^abc]", "d", true}, {"[^abc]", "a", false},
		{"[a-c]x", "bx", true}, {"[a-c]x", "dx", false}, {"[]]", "]", true}, {"[]a]", "a", true},
		{"[^]]", "]", false}, {"[-a]", "-", true}, {"[a-]", "-", true}, {"[a-]", "b", false},
		{"[", "[", false}, {"[abc", "a", false}, {"*[abc", "xa", false}, {"]", "]", true},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "aXcYb", false}, {"", "", true}, {"", "a", false},
		{"*[0-9]", "abc7", true}, {"*[0-9]", "abc", false}, {"[é-ê]", "ê", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// FuzzGlobMatch checks globMatch against SQLite's own GLOB.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{{"a*b?", "axxbc"}, {"**", "x/y"}, {"?é*", "aéz"}, {"[^a-c]*", "d"}, {"*[]x-]", "ab-"}} {
		f.Add(s[0], s[1])
	}
	fuzzAgainstSQLite(f, "GLOB", globMatch)
}
