package table

import "strings"

// usersFromContext is the set of local users a per-user table (shell
// history, ssh keys) looks at: those of uid = constraints, or everyone.
func usersFromContext(q *queryCtx) []passwdEntry {
	all := readPasswd(q.fs)
	uids := q.Eq("uid")
	if len(uids) == 0 {
		return all
	}
	var out []passwdEntry
	for _, u := range all {
		if contains(uids, u.uid) {
			out = append(out, u)
		}
	}
	return out
}

// joinHome joins a home directory and a relative file name.
func joinHome(home, name string) string {
	return strings.TrimSuffix(home, "/") + "/" + name
}

// trimmedLines returns the non-empty, trimmed lines of a file (osquery's
// split(content, "\n")).
func trimmedLines(f *rootFS, p string) ([]string, bool) {
	b, err := f.ReadFile(p)
	if err != nil {
		return nil, false
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, true
}
