package table

import "strings"

var processEnvsTable = &tableDef{schema: processEnvsSchema, gen: genProcessEnvs}

// processEnvsSchema is specs/posix/process_envs.table (Linux columns).
var processEnvsSchema = Schema{
	Name:        "process_envs",
	Description: "A key/value table of environment variables for each process.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger, Index: true},
		{Name: "key", Type: TypeText},
		{Name: "value", Type: TypeText},
	},
}

// genProcessEnvs splits /proc/<pid>/environ at NULs and each variable at
// its first '='.
func genProcessEnvs(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, pid := range procPids(q) {
		if err := q.Err(); err != nil {
			return nil, err
		}
		b, err := q.fs.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			continue
		}
		for _, v := range strings.Split(string(b), "\x00") {
			if v == "" {
				continue
			}
			key, value, _ := strings.Cut(v, "=")
			rows = append(rows, Row{"pid": pid, "key": key, "value": value})
		}
	}
	return rows, nil
}
