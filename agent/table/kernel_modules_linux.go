package table

import "strings"

var kernelModulesTable = &tableDef{schema: kernelModulesSchema, gen: genKernelModules}

// kernelModulesSchema is specs/linux/kernel_modules.table (Linux columns).
var kernelModulesSchema = Schema{
	Name:        "kernel_modules",
	Description: "Linux kernel modules both loaded and within the load search path.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "size", Type: TypeBigint},
		{Name: "used_by", Type: TypeText},
		{Name: "status", Type: TypeText},
		{Name: "address", Type: TypeText},
	},
}

// genKernelModules parses /proc/modules:
// "name size refcount used_by, state address".
func genKernelModules(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/proc/modules") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSuffix(f[i], ",")
		}
		rows = append(rows, Row{"name": f[0], "size": f[1], "used_by": f[3], "status": f[4], "address": f[5]})
	}
	return rows, nil
}
