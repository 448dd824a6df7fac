package table

import "strings"

var groupsTable = &tableDef{schema: groupsSchema, gen: genGroups}

// groupsSchema is specs/groups.table (Linux columns).
var groupsSchema = Schema{
	Name:        "groups",
	Description: "Local system groups.",
	Columns: []Column{
		{Name: "gid", Type: TypeBigint, Index: true},
		{Name: "gid_signed", Type: TypeBigint},
		{Name: "groupname", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

type groupEntry struct {
	name, gid string
	members   []string
}

// readGroup parses /etc/group under the root (local groups only).
func readGroup(f *rootFS) []groupEntry {
	var out []groupEntry
	for _, line := range f.Lines("/etc/group") {
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		p := strings.Split(line, ":")
		if len(p) < 4 {
			continue
		}
		g := groupEntry{name: p[0], gid: p[2]}
		for _, m := range strings.Split(p[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.members = append(g.members, m)
			}
		}
		out = append(out, g)
	}
	return out
}

func genGroups(q *queryCtx) ([]Row, error) {
	gids := q.Eq("gid")
	var rows []Row
	for _, g := range readGroup(q.fs) {
		if len(gids) > 0 && !contains(gids, g.gid) {
			continue
		}
		rows = append(rows, Row{"gid": g.gid, "gid_signed": signed32(g.gid), "groupname": g.name})
	}
	return rows, nil
}
