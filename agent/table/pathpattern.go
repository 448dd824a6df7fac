package table

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode/utf8"
)

// maxExpandedPaths bounds what one LIKE or GLOB pattern may expand to, so
// that "path LIKE '/%%'" fails with a clear error instead of walking the
// disk. A variable only so that tests can reach it with a small tree.
var maxExpandedPaths = 100000

// pathSyntax is one pattern language on paths: LIKE or GLOB.
type pathSyntax struct {
	name string
	// wild reports whether a path component holds a wildcard.
	wild func(part string) bool
	// recursive reports whether a final component also takes everything
	// below its matches.
	recursive func(part string) bool
	match     func(part, name string) bool
}

var (
	likeSyntax = pathSyntax{
		name:      "LIKE",
		wild:      func(p string) bool { return strings.ContainsAny(p, "%_") },
		recursive: func(p string) bool { return strings.Contains(p, "%%") },
		match:     likeMatch,
	}
	globSyntax = pathSyntax{
		name:      "GLOB",
		wild:      func(p string) bool { return strings.ContainsAny(p, "*?[") },
		recursive: func(p string) bool { return strings.Contains(p, "**") },
		match:     globMatch,
	}
)

// expandLike turns a SQL LIKE pattern on an absolute path into the paths it
// names, with osquery's filesystem wildcard rules: "%" (and "_") match
// within one path component, and a final component containing "%%" also
// takes everything below the matching entries, at any depth. The result is
// a superset SQLite then narrows with its own LIKE, case rules included
// (ASCII case is ignored here too). Directories reached through symlinks
// are not descended into.
func expandLike(q *queryCtx, pattern string) ([]string, error) {
	return expandPath(q, pattern, likeSyntax)
}

// expandGlob is expandLike for SQL GLOB patterns, with the same rules in
// GLOB's spelling: "*", "?" and "[...]" match within one path component
// (case-sensitive, as GLOB is), and a final component containing "**" also
// takes everything below its matches. A "[...]" set cannot hold "/".
func expandGlob(q *queryCtx, pattern string) ([]string, error) {
	if err := checkGlobSets(pattern); err != nil {
		return nil, err
	}
	return expandPath(q, pattern, globSyntax)
}

func expandPath(q *queryCtx, pattern string, syn pathSyntax) ([]string, error) {
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
		if !syn.wild(part) {
			// Joined without cleaning: the row must keep the path the
			// pattern names for SQLite's re-check to accept it.
			for j := range cur {
				cur[j] = strings.TrimSuffix(cur[j], "/") + "/" + part
			}
			continue
		}
		recursive := last && syn.recursive(part)
		var next []string
		for _, dir := range cur {
			ents, err := q.fs.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range ents {
				if !syn.match(part, e.Name()) {
					continue
				}
				p := strings.TrimSuffix(dir, "/") + "/" + e.Name()
				next = append(next, p)
				if recursive && e.IsDir() {
					var err error
					next, err = walkBelow(q, p, next)
					if err != nil && !errors.Is(err, errTooManyPaths) {
						return nil, fmt.Errorf("expanding %s %q: %w", syn.name, pattern, err)
					}
				}
				if len(next) > maxExpandedPaths {
					return nil, fmt.Errorf("%s pattern %q matches more than %d paths; narrow it", syn.name, pattern, maxExpandedPaths)
				}
			}
		}
		cur = next
	}
	sort.Strings(cur)
	return cur, nil
}

// errTooManyPaths stops a walk that went over maxExpandedPaths.
var errTooManyPaths = errors.New("too many paths")

// walkBelow appends every entry below dir (not following symlinks); past
// maxExpandedPaths it returns what it has and errTooManyPaths.
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
			return out, errTooManyPaths
		}
		if e.IsDir() {
			if out, err = walkBelow(q, p, out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// likeMatch reports whether s matches the SQL LIKE pattern p as SQLite
// evaluates it by default: '%' any run of characters, '_' one character,
// ASCII letters compared without case, no escape character.
func likeMatch(p, s string) bool { return wildMatch(p, s, '%', likeOne) }

// globMatch reports whether s matches the SQL GLOB pattern p as SQLite
// evaluates it: '*' any run of characters, '?' one character, "[...]" one
// character of a set ("[^...]" not of it; "a-z" ranges; a ']' first or a
// '-' first or last is literal; an unclosed set matches nothing), all other
// characters compared exactly.
func globMatch(p, s string) bool { return wildMatch(p, s, '*', globOne) }

// wildMatch matches s against p, where star matches any run of characters
// and one matches the one-character token at the start of p against c and
// returns the token's length. Every token but star takes exactly one
// character, so iterative matching with backtracking to the last star is
// enough: linear in practice, never exponential.
func wildMatch(p, s string, star byte, one func(p string, c rune) (bool, int)) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			if p[pi] == star {
				starP, starS = pi, si
				pi++
				continue
			}
			sc, sn := utf8.DecodeRuneInString(s[si:])
			if ok, n := one(p[pi:], sc); ok {
				pi += n
				si += sn
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star swallow one more character.
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		si = starS
		pi = starP + 1
	}
	for pi < len(p) && p[pi] == star {
		pi++
	}
	return pi == len(p)
}

// likeOne matches the one-character LIKE token at the start of p ('_' or a
// literal, ASCII case ignored) against c, and returns the token's length.
func likeOne(p string, c rune) (bool, int) {
	pc, n := utf8.DecodeRuneInString(p)
	return pc == '_' || foldASCII(pc) == foldASCII(c), n
}

// globOne matches the one-character token at the start of p ('?', a set or
// a literal) against c, and returns the token's length.
func globOne(p string, c rune) (bool, int) {
	pc, n := utf8.DecodeRuneInString(p)
	switch pc {
	case '?':
		return true, n
	case '[':
		return globSet(p, c)
	}
	return pc == c, n
}

// globSet matches c against the set at the start of p ("[...]"), with
// SQLite's rules; an unclosed set never matches.
func globSet(p string, c rune) (bool, int) {
	i := 1
	invert, seen := false, false
	next := func() rune {
		if i >= len(p) {
			return 0
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		i += n
		return r
	}
	c2 := next()
	if c2 == '^' {
		invert = true
		c2 = next()
	}
	if c2 == ']' {
		seen = c == ']'
		c2 = next()
	}
	var prior rune = -1
	for c2 != 0 && c2 != ']' {
		if c2 == '-' && i < len(p) && p[i] != ']' && prior >= 0 {
			hi := next()
			if c >= prior && c <= hi {
				seen = true
			}
			prior = -1
		} else {
			if c == c2 {
				seen = true
			}
			prior = c2
		}
		c2 = next()
	}
	if c2 == 0 {
		return false, len(p)
	}
	return seen != invert, i
}

// checkGlobSets rejects a GLOB pattern with a "[...]" set that spans a '/':
// path wildcards match within one component, so such a set could never be
// honoured.
func checkGlobSets(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '[' {
			continue
		}
		j := i + 1
		if j < len(pattern) && pattern[j] == '^' {
			j++
		}
		if j < len(pattern) && pattern[j] == ']' {
			j++
		}
		end := strings.IndexByte(pattern[j:], ']')
		if end < 0 {
			return nil // unclosed: matches nothing, as in SQLite
		}
		if strings.Contains(pattern[i:j+end], "/") {
			return fmt.Errorf("GLOB pattern %q: the set at byte %d contains '/', but path wildcards match within one path component", pattern, i)
		}
		i = j + end
	}
	return nil
}

func foldASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

// pathOps are the operators on path and directory that file and hash
// resolve, in the order they are applied (the first to name a path decides
// the directory it is reported under), each with how its operand expands
// into paths.
var pathOps = []struct {
	values func(q *queryCtx, col string) []string
	expand func(q *queryCtx, operand string) ([]string, error)
}{
	{(*queryCtx).Eq, func(_ *queryCtx, p string) ([]string, error) { return []string{p}, nil }},
	{(*queryCtx).Like, expandLike},
	{(*queryCtx).Glob, expandGlob},
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
	// addDir adds the entries of d, reported under the directory as the
	// query spelled it, so that SQLite's own check of "directory = ..."
	// holds.
	addDir := func(d string) {
		ents, err := q.fs.ReadDir(d)
		if err != nil {
			return
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			add(strings.TrimSuffix(d, "/")+"/"+n, d)
		}
	}
	// Every path constraint is resolved before any directory one.
	for _, col := range []struct {
		name string
		take func(p string)
	}{
		{"path", func(p string) { add(p, path.Dir(p)) }},
		{"directory", addDir},
	} {
		for _, op := range pathOps {
			for _, v := range op.values(q, col.name) {
				paths, err := op.expand(q, v)
				if err != nil {
					return nil, err
				}
				for _, p := range paths {
					if strings.HasPrefix(p, "/") {
						col.take(p)
					}
				}
			}
		}
	}
	if len(out) > maxExpandedPaths {
		return nil, fmt.Errorf("constraints name more than %d paths; narrow them", maxExpandedPaths)
	}
	return out, nil
}
