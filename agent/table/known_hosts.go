package table

var knownHostsTable = &tableDef{schema: knownHostsSchema, gen: genKnownHosts}

// knownHostsSchema is specs/posix/known_hosts.table (Linux columns).
var knownHostsSchema = Schema{
	Name:        "known_hosts",
	Description: "A line-delimited known_hosts table.",
	Columns: []Column{
		{Name: "uid", Type: TypeBigint, Index: true},
		{Name: "key", Type: TypeText},
		{Name: "key_file", Type: TypeText},
	},
}

// genKnownHosts gives each line of ~/.ssh/known_hosts of each user.
func genKnownHosts(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, u := range usersFromContext(q) {
		file := joinHome(u.home, ".ssh/known_hosts")
		lines, _ := trimmedLines(q.fs, file)
		for _, line := range lines {
			if line[0] == '#' {
				continue
			}
			rows = append(rows, Row{"uid": u.uid, "key": line, "key_file": file})
		}
	}
	return rows, nil
}
