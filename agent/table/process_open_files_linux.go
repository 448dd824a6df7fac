package table

var processOpenFilesTable = &tableDef{schema: processOpenFilesSchema, gen: genProcessOpenFiles}

// processOpenFilesSchema is specs/posix/process_open_files.table (Linux columns).
var processOpenFilesSchema = Schema{
	Name:        "process_open_files",
	Description: "File descriptors for each process.",
	Columns: []Column{
		{Name: "pid", Type: TypeBigint, Index: true},
		{Name: "fd", Type: TypeBigint},
		{Name: "path", Type: TypeText},
	},
}

// genProcessOpenFiles lists every descriptor of /proc/<pid>/fd with its
// link target (files, sockets, pipes, anon inodes), as osquery does.
func genProcessOpenFiles(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, pid := range procPids(q) {
		if err := q.Err(); err != nil {
			return nil, err
		}
		dir := "/proc/" + pid + "/fd"
		ents, err := q.fs.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range ents {
			target, err := q.fs.Readlink(dir + "/" + e.Name())
			if err != nil {
				continue
			}
			rows = append(rows, Row{"pid": pid, "fd": e.Name(), "path": target})
		}
	}
	return rows, nil
}
