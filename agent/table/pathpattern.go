package table

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode/utf8"
)

// maxExpandedPaths bounds what one LIKE pattern may expand to, so that
// "path LIKE '/%%'" fails with a clear error instead of walking the disk.
const maxExpandedPaths = 100000

// expandLike turns a SQL LIKE pattern on an absolute path into the paths it
// names, with osquery's filesystem wildcard rules: "%" (and "_") match
// within one path component, and a final component containing "%%" also
// takes everything below the matching entries, at any depth. The result is
// a superset SQLite then narrows with its own LIKE, case rules included
// (ASCII case is ignored here too). Directories reached through symlinks
// are not descended into.
func expandLike(q *queryCtx, pattern string) ([]string, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, nil
	}
	parts := strings.Split(strings.Trim(pattern, "/"), "/")
	cur := []string{"/"}
	for i, part := range parts {
		if err := q.Err(); err != nil {
			return nil, err
		}
		last := i == len(parts)-1
		if part == "" {
			continue
		}
		if !strings.ContainsAny(part, "%_") {
			// Joined without cleaning: the row must keep the path the
			// pattern names for SQLite's re-check to accept it.
			for j := range cur {
				cur[j] = strings.TrimSuffix(cur[j], "/") + "/" + part
			}
			continue
		}
		recursive := last && strings.Contains(part, "%%")
		var next []string
		for _, dir := range cur {
			ents, err := q.fs.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range ents {
				if !likeMatch(part, e.Name()) {
					continue
				}
				p := strings.TrimSuffix(dir, "/") + "/" + e.Name()
				next = append(next, p)
				if recursive && e.IsDir() {
					var err error
					if next, err = walkBelow(q, p, next); err != nil {
						return nil, fmt.Errorf("expanding %q: %w", pattern, err)
					}
				}
				if len(next) > maxExpandedPaths {
					return nil, fmt.Errorf("pattern %q matches more than %d paths; narrow it", pattern, maxExpandedPaths)
				}
			}
		}
		cur = next
	}
	sort.Strings(cur)
	return cur, nil
}

// walkBelow appends every entry below dir (not following symlinks).
func walkBelow(q *queryCtx, dir string, out []string) ([]string, error) {
	if err := q.Err(); err != nil {
		return nil, err
	}
	ents, err := q.fs.ReadDir(dir)
	if err != nil {
		return out, nil
	}
	for _, e := range ents {
		p := strings.TrimSuffix(dir, "/") + "/" + e.Name()
		out = append(out, p)
		if len(out) > maxExpandedPaths {
			return nil, fmt.Errorf("more than %d paths below %s; narrow the pattern", maxExpandedPaths, dir)
		}
		if e.IsDir() {
			if out, err = walkBelow(q, p, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// likeMatch reports whether s matches the SQL LIKE pattern p as SQLite
// evaluates it by default: '%' any run of characters, '_' one character,
// ASCII letters compared without case, no escape character.
func likeMatch(p, s string) bool {
	// Iterative matching with backtracking to the last '%': linear in
	// practice, never exponential.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			pc, pn := utf8.DecodeRuneInString(p[pi:])
			sc, sn := utf8.DecodeRuneInString(s[si:])
			switch {
			case pc == '%':
				starP, starS = pi, si
				pi += pn
				continue
			case pc == '_' || foldASCII(pc) == foldASCII(sc):
				pi += pn
				si += sn
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '%' swallow one more character.
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		si = starS
		pi = starP + 1
	}
	for pi < len(p) && p[pi] == '%' {
		pi++
	}
	return pi == len(p)
}

func foldASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

// targetPaths resolves the path and directory constraints of file and hash
// into the paths to report, each with the directory it is reported under.
func targetPaths(q *queryCtx) ([][2]string, error) {
	var out [][2]string
	seen := map[string]bool{}
	add := func(p, dir string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, [2]string{p, dir})
		}
	}
	for _, p := range q.Eq("path") {
		if strings.HasPrefix(p, "/") {
			add(p, path.Dir(p))
		}
	}
	for _, pat := range q.Like("path") {
		paths, err := expandLike(q, pat)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			add(p, path.Dir(p))
		}
	}
	dirs := q.Eq("directory")
	for _, pat := range q.Like("directory") {
		d, err := expandLike(q, pat)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d...)
	}
	for _, d := range dirs {
		if !strings.HasPrefix(d, "/") {
			continue
		}
		ents, err := q.fs.ReadDir(d)
		if err != nil {
			continue
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			// Reported under the directory as the query spelled it, so
			// that SQLite's own check of "directory = ..." holds.
			add(strings.TrimSuffix(d, "/")+"/"+n, d)
		}
	}
	if len(out) > maxExpandedPaths {
		return nil, fmt.Errorf("constraints name more than %d paths; narrow them", maxExpandedPaths)
	}
	return out, nil
}
