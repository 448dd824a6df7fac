package table

import (
	"strconv"
	"strings"
)

var processMemoryMapTable = &tableDef{schema: processMemoryMapSchema, gen: genProcessMemoryMap}

// processMemoryMapSchema is specs/process_memory_map.table (Linux columns).
var processMemoryMapSchema = Schema{
	Name:        "process_memory_map",
	Description: "Process memory mapped files and pseudo device/regions.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger, Index: true},
		{Name: "start", Type: TypeText},
		{Name: "end", Type: TypeText},
		{Name: "permissions", Type: TypeText},
		{Name: "offset", Type: TypeBigint},
		{Name: "device", Type: TypeText},
		{Name: "inode", Type: TypeInteger},
		{Name: "path", Type: TypeText},
		{Name: "pseudo", Type: TypeInteger},
	},
}

// genProcessMemoryMap parses /proc/<pid>/maps:
// "start-end perms offset dev inode [path]".
func genProcessMemoryMap(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, pid := range procPids(q) {
		if err := q.Err(); err != nil {
			return nil, err
		}
		for _, line := range q.fs.Lines("/proc/" + pid + "/maps") {
			if r := parseMapsLine(line); r != nil {
				r["pid"] = pid
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

func parseMapsLine(line string) Row {
	f := strings.Fields(line)
	if len(f) < 5 {
		return nil
	}
	start, end, ok := strings.Cut(f[0], "-")
	if !ok {
		return nil
	}
	r := Row{
		"start":       "0x" + start,
		"end":         "0x" + end,
		"permissions": f[1],
		"device":      f[3],
		"inode":       f[4],
		"offset":      int64(-1),
	}
	if off, err := strconv.ParseInt(f[2], 16, 64); err == nil {
		r["offset"] = off
	}
	path := ""
	if len(f) > 5 {
		// The path is the rest of the line and may contain spaces.
		path = strings.TrimSpace(line[strings.Index(line, f[5]):])
	}
	r["path"] = path
	if f[4] == "0" && path != "" {
		r["pseudo"] = 1
	} else {
		r["pseudo"] = 0
	}
	return r
}
