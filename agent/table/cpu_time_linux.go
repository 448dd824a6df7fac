package table

import "strings"

var cpuTimeTable = &tableDef{schema: cpuTimeSchema, gen: genCPUTime}

// cpuTimeSchema is specs/posix/cpu_time.table (Linux columns).
var cpuTimeSchema = Schema{
	Name:        "cpu_time",
	Description: "Displays information from /proc/stat file about the time the cpu cores spent in different parts of the system.",
	Columns: []Column{
		{Name: "core", Type: TypeInteger},
		{Name: "user", Type: TypeBigint},
		{Name: "nice", Type: TypeBigint},
		{Name: "system", Type: TypeBigint},
		{Name: "idle", Type: TypeBigint},
		{Name: "iowait", Type: TypeBigint},
		{Name: "irq", Type: TypeBigint},
		{Name: "softirq", Type: TypeBigint},
		{Name: "steal", Type: TypeBigint},
		{Name: "guest", Type: TypeBigint},
		{Name: "guest_nice", Type: TypeBigint},
	},
}

// genCPUTime gives the per-core lines of /proc/stat, in USER_HZ ticks.
func genCPUTime(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/proc/stat") {
		f := strings.Fields(line)
		if len(f) < 8 || len(f[0]) <= 3 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		r := Row{
			"core": f[0][3:], "user": f[1], "nice": f[2], "system": f[3], "idle": f[4],
			"iowait": f[5], "irq": f[6], "softirq": f[7], "steal": 0, "guest": 0, "guest_nice": 0,
		}
		for i, c := range []string{"steal", "guest", "guest_nice"} {
			if len(f) > 8+i {
				r[c] = f[8+i]
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}
