package table

var processNamespacesTable = &tableDef{schema: processNamespacesSchema, gen: genProcessNamespaces}

// processNamespacesSchema is specs/linux/process_namespaces.table (Linux columns).
var processNamespacesSchema = Schema{
	Name:        "process_namespaces",
	Description: "Linux namespaces for processes running on the host system.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger, Index: true},
		{Name: "cgroup_namespace", Type: TypeText},
		{Name: "ipc_namespace", Type: TypeText},
		{Name: "mnt_namespace", Type: TypeText},
		{Name: "net_namespace", Type: TypeText},
		{Name: "pid_namespace", Type: TypeText},
		{Name: "user_namespace", Type: TypeText},
		{Name: "uts_namespace", Type: TypeText},
	},
}

var namespaceKinds = []string{"cgroup", "ipc", "mnt", "net", "pid", "user", "uts"}

// genProcessNamespaces gives the inode of each /proc/<pid>/ns/* link; a
// namespace that cannot be read is NULL.
func genProcessNamespaces(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, pid := range procPids(q) {
		if err := q.Err(); err != nil {
			return nil, err
		}
		if _, err := q.fs.Lstat("/proc/" + pid + "/ns"); err != nil {
			continue // gone
		}
		r := Row{"pid": pid}
		for _, k := range namespaceKinds {
			if ino := nsInode(q.fs, pid, k); ino != "0" {
				r[k+"_namespace"] = ino
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}
