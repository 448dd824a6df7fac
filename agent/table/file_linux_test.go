package table

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	_ "modernc.org/sqlite"
)

// fileTree makes root/etc/{a.conf,b.txt,sub/c.conf,sub/deep/d.conf} and a
// symlink, and returns an engine rooted there.
func fileTree(t *testing.T) (*Engine, string) {
	root := t.TempDir()
	for p, content := range map[string]string{
		"etc/a.conf":          "alpha\n",
		"etc/b.txt":           "",
		"etc/sub/c.conf":      "charlie",
		"etc/sub/deep/d.conf": "delta",
		"etc/Upper.CONF":      "u",
		"other/x":             "x",
	} {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("a.conf", filepath.Join(root, "etc/link"))
	os.Symlink("/nowhere", filepath.Join(root, "etc/dangling"))
	os.Symlink("../other", filepath.Join(root, "etc/sub/loop"))
	return openTest(t, Options{Root: root}), root
}

func paths(res Result) string {
	var out []string
	for _, r := range res.Rows {
		out = append(out, r["path"])
	}
	return strings.Join(out, " ")
}

func TestFileTable(t *testing.T) {
	e, _ := fileTree(t)
	res := query(t, e, "SELECT path, directory, filename, size, mode, type, symlink, symlink_target_path, hard_links FROM file WHERE path = '/etc/a.conf'")
	want := row("path", "/etc/a.conf", "directory", "/etc", "filename", "a.conf", "size", "6", "mode", "0640", "type", "regular", "symlink", "0", "symlink_target_path", "", "hard_links", "1")
	if len(res.Rows) != 1 || fmtRows(res.Rows) != fmtRows([]map[string]string{want}) {
		t.Errorf("got %s", fmtRows(res.Rows))
	}
	res = query(t, e, "SELECT path, type, symlink, symlink_target_path, size FROM file WHERE path IN ('/etc/link', '/etc/dangling', '/etc/missing') ORDER BY path")
	if got := fmtRows(res.Rows); got != fmtRows([]map[string]string{
		row("path", "/etc/dangling", "type", "symlink", "symlink", "1", "symlink_target_path", "/nowhere", "size", "8"),
		row("path", "/etc/link", "type", "regular", "symlink", "1", "symlink_target_path", "a.conf", "size", "6"),
	}) {
		t.Errorf("symlinks: %s", got)
	}
	// One level.
	res = query(t, e, "SELECT path FROM file WHERE path LIKE '/etc/%.conf' ORDER BY path")
	if got := paths(res); got != "/etc/Upper.CONF /etc/a.conf" {
		t.Errorf("LIKE one level: %s", got)
	}
	// Recursive, not following the symlinked directory.
	res = query(t, e, "SELECT path FROM file WHERE path LIKE '/etc/sub/%%' ORDER BY path")
	if got := paths(res); got != "/etc/sub/c.conf /etc/sub/deep /etc/sub/deep/d.conf /etc/sub/loop" {
		t.Errorf("LIKE recursive: %s", got)
	}
	res = query(t, e, "SELECT path FROM file WHERE path LIKE '/%/sub/%.conf'")
	if got := paths(res); got != "/etc/sub/c.conf" {
		t.Errorf("LIKE in the middle: %s", got)
	}
	res = query(t, e, "SELECT path FROM file WHERE directory = '/etc/sub' ORDER BY path")
	if got := paths(res); got != "/etc/sub/c.conf /etc/sub/deep /etc/sub/loop" {
		t.Errorf("directory =: %s", got)
	}
	// A join that feeds path from another table.
	res = query(t, e, "SELECT f.path FROM (SELECT '/etc/b.txt' AS p UNION ALL SELECT '/etc/a.conf') AS x JOIN file f ON f.path = x.p ORDER BY f.path")
	if got := paths(res); got != "/etc/a.conf /etc/b.txt" {
		t.Errorf("join: %s", got)
	}
}

func TestRequiredConstraint(t *testing.T) {
	e, _ := fileTree(t)
	for _, q := range []string{"SELECT * FROM file", "SELECT * FROM hash WHERE md5 = 'x'", "SELECT count(*) FROM file WHERE size > 0"} {
		_, err := e.Query(context.Background(), q)
		table := "file"
		if strings.Contains(q, "hash") {
			table = "hash"
		}
		want := `table "` + table + `" requires a constraint on "path" or "directory"`
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v, want %q", q, err, want)
		}
	}
}

func TestHashTable(t *testing.T) {
	e, _ := fileTree(t)
	wantRows(t, e, "SELECT * FROM hash WHERE path = '/etc/a.conf'", row(
		"path", "/etc/a.conf", "directory", "/etc",
		"md5", md5hex("alpha\n"),
		"sha1", sha1hex("alpha\n"), "sha256", sha256hex("alpha\n")))
	res := query(t, e, "SELECT path, sha256 FROM hash WHERE directory = '/etc/sub'")
	if len(res.Rows) != 1 || res.Rows[0]["sha256"] != sha256hex("charlie") {
		t.Errorf("hash of a directory's files: %s", fmtRows(res.Rows))
	}
	wantRows(t, e, "SELECT path FROM hash WHERE path = '/etc/sub'") // directories are not hashed
}

func TestExpandLike(t *testing.T) {
	e, _ := fileTree(t)
	q := &queryCtx{ctx: context.Background(), fs: e.fs, e: e}
	got, err := expandLike(q, "/etc/%%")
	if err != nil || len(got) != 10 || got[0] != "/etc/Upper.CONF" || got[9] != "/etc/sub/loop" {
		t.Errorf("expandLike(/etc/%%%%) = %v, %v", got, err)
	}
	if got, _ := expandLike(q, "relative/%"); got != nil {
		t.Errorf("relative pattern expanded to %v", got)
	}
}

func TestLikeMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"%", "", true}, {"a%", "abc", true}, {"%c", "abc", true}, {"a_c", "abc", true},
		{"a_c", "ac", false}, {"A%", "abc", true}, {"%b%", "abc", true}, {"%x%", "abc", false},
		{"%%", "a/b", true}, {"é_", "éx", true}, {"_", "é", true}, {"É", "é", false},
		{"a%b%c", "aXbYc", true}, {"a%b%c", "aXcYb", false}, {"", "", true}, {"", "a", false},
	} {
		if got := likeMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("likeMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// FuzzLikeMatch checks likeMatch against SQLite's own LIKE.
func FuzzLikeMatch(f *testing.F) {
	for _, s := range [][2]string{{"a%b_", "axxbc"}, {"%%", "x/y"}, {"_é%", "aéz"}, {"%A", "xa"}, {"a%%%b", "ab"}} {
		f.Add(s[0], s[1])
	}
	fuzzAgainstSQLite(f, "LIKE", likeMatch)
}

// fuzzAgainstSQLite fuzzes match(pattern, s) against SQLite's "s op
// pattern" for op LIKE or GLOB.
func fuzzAgainstSQLite(f *testing.F, op string, match func(p, s string) bool) {
	ops := map[string]struct{ star, query string }{
		"LIKE": {"%", "SELECT ? LIKE ?"},
		"GLOB": {"*", "SELECT ? GLOB ?"},
	}
	o, ok := ops[op]
	if !ok {
		f.Fatalf("fuzzAgainstSQLite: operator %q is neither LIKE nor GLOB", op)
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	f.Fuzz(func(t *testing.T, p, s string) {
		// SQLite backtracks in O(len(s)^wildcards): keep the oracle fast.
		if !utf8.ValidString(p) || !utf8.ValidString(s) || strings.ContainsRune(p+s, 0) ||
			len(s) > 40 || strings.Count(p, o.star) > 4 {
			return
		}
		var want bool
		if err := db.QueryRow(o.query, s, p).Scan(&want); err != nil {
			t.Skip(err)
		}
		if got := match(p, s); got != want {
			t.Fatalf("%s: match(%q, %q) = %v, SQLite says %v", op, p, s, got, want)
		}
	})
}

// FuzzExpandLike checks that every path a pattern expands to exists in the
// tree and matches the pattern, so that SQLite's re-check never needs to
// undo more than case. Each input is tried both as a LIKE and as a GLOB
// pattern.
func FuzzExpandLike(f *testing.F) {
	for _, p := range []string{"/etc/%", "/etc/%%", "/%/sub/%", "/etc/_.conf", "/e%/s%/%%", "/%%", "//etc//%",
		"/etc/*", "/etc/**", "/*/cron.?/*", "/etc/[a-m]*", "/e[^x]c/**", "/etc[/]x", "/[]a]*"} {
		f.Add(p)
	}
	root, err := filepath.Abs("testdata/root")
	if err != nil {
		f.Fatal(err)
	}
	fsys := newRootFS(root)
	f.Fuzz(func(t *testing.T, pattern string) {
		if !utf8.ValidString(pattern) {
			return
		}
		// Empty components are ignored by the expansion.
		var parts []string
		for _, c := range strings.Split(pattern, "/") {
			if c != "" {
				parts = append(parts, c)
			}
		}
		norm := "/" + strings.Join(parts, "/")
		for _, syn := range []struct {
			name   string
			expand func(*queryCtx, string) ([]string, error)
			match  func(p, s string) bool
			meta   string
			rec    string // marks a recursive final component
		}{
			{"LIKE", expandLike, likeMatch, "%_", "%%"},
			{"GLOB", expandGlob, globMatch, "*?[", "**"},
		} {
			q := &queryCtx{ctx: context.Background(), fs: fsys}
			got, err := syn.expand(q, pattern)
			if err != nil {
				if strings.Contains(err.Error(), "narrow it") || strings.Contains(err.Error(), "contains '/'") {
					continue
				}
				t.Fatalf("%s expansion of %q: unexpected error %v", syn.name, pattern, err)
			}
			for _, p := range got {
				// A recursive final component ("%%C") also takes
				// everything below its matches, which SQLite's re-check
				// narrows: then the path's first len(parts) components
				// must match.
				below := len(parts) > 0 && strings.Contains(parts[len(parts)-1], syn.rec) &&
					syn.match(norm, firstComponents(p, len(parts)))
				if !syn.match(norm, p) && !below {
					t.Fatalf("%s expansion of %q gave %q, which does not match %q", syn.name, pattern, p, norm)
				}
				if strings.ContainsAny(pattern, syn.meta) && !strings.ContainsAny(path.Base(p), syn.meta) {
					if _, err := fsys.Lstat(p); err != nil && strings.ContainsAny(path.Base(norm), syn.meta) {
						t.Fatalf("%s expansion of %q gave %q, which does not exist", syn.name, pattern, p)
					}
				}
			}
		}
	})
}

func md5hex(s string) string    { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha1hex(s string) string   { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha256hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// firstComponents returns the absolute path made of p's first n components.
func firstComponents(p string, n int) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) > n {
		parts = parts[:n]
	}
	return "/" + strings.Join(parts, "/")
}
