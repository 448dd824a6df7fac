package table

var userGroupsTable = &tableDef{schema: userGroupsSchema, gen: genUserGroups}

// userGroupsSchema is specs/user_groups.table (Linux columns).
var userGroupsSchema = Schema{
	Name:        "user_groups",
	Description: "Local system user group relationships.",
	Columns: []Column{
		{Name: "uid", Type: TypeBigint, Index: true},
		{Name: "gid", Type: TypeBigint, Index: true},
	},
}

// genUserGroups gives each local user's primary group and every group of
// /etc/group listing the user as a member (what getgrouplist returns for
// local accounts).
func genUserGroups(q *queryCtx) ([]Row, error) {
	uids, gids := q.Eq("uid"), q.Eq("gid")
	groups := readGroup(q.fs)
	var rows []Row
	for _, u := range readPasswd(q.fs) {
		if len(uids) > 0 && !contains(uids, u.uid) {
			continue
		}
		seen := map[string]bool{u.gid: true}
		list := []string{u.gid}
		for _, g := range groups {
			if !seen[g.gid] && contains(g.members, u.name) {
				seen[g.gid] = true
				list = append(list, g.gid)
			}
		}
		for _, gid := range list {
			if len(gids) > 0 && !contains(gids, gid) {
				continue
			}
			rows = append(rows, Row{"uid": u.uid, "gid": gid})
		}
	}
	return rows, nil
}
