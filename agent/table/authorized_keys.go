package table

import "strings"

var authorizedKeysTable = &tableDef{schema: authorizedKeysSchema, gen: genAuthorizedKeys}

// authorizedKeysSchema is specs/posix/authorized_keys.table (Linux columns).
var authorizedKeysSchema = Schema{
	Name:        "authorized_keys",
	Description: "A line-delimited authorized_keys table.",
	Columns: []Column{
		{Name: "uid", Type: TypeBigint},
		{Name: "algorithm", Type: TypeText},
		{Name: "key", Type: TypeText},
		{Name: "options", Type: TypeText},
		{Name: "comment", Type: TypeText},
		{Name: "key_file", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

var sshKeyTypes = []string{"ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}

// genAuthorizedKeys reads ~/.ssh/authorized_keys{,2} of each user: options,
// algorithm, key and comment of each protocol 2 key line.
func genAuthorizedKeys(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, u := range usersFromContext(q) {
		for _, name := range []string{".ssh/authorized_keys", ".ssh/authorized_keys2"} {
			file := joinHome(u.home, name)
			lines, ok := trimmedLines(q.fs, file)
			if !ok {
				continue
			}
			for _, line := range lines {
				if line[0] == '#' {
					continue
				}
				if r := authorizedKeyLine(line); r != nil {
					r["uid"], r["key_file"] = u.uid, file
					rows = append(rows, r)
				}
			}
		}
	}
	return rows, nil
}

func authorizedKeyLine(line string) Row {
	for _, kt := range sshKeyTypes {
		pos := strings.Index(line, kt)
		if pos < 0 {
			continue
		}
		end := pos + len(kt)
		if end >= len(line) || (line[end] != ' ' && line[end] != '\t') {
			continue
		}
		r := Row{"algorithm": kt}
		if pos > 0 {
			r["options"] = strings.TrimRight(line[:pos], " \t")
		}
		rest := strings.TrimLeft(line[end:], " \t")
		if rest == "" {
			return nil
		}
		key, comment, found := strings.Cut(strings.ReplaceAll(rest, "\t", " "), " ")
		r["key"] = key
		if found {
			r["comment"] = strings.TrimLeft(comment, " ")
		}
		return r
	}
	return nil
}
