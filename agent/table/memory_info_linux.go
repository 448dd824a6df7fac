package table

var memoryInfoTable = &tableDef{schema: memoryInfoSchema, gen: genMemoryInfo}

// memoryInfoSchema is specs/linux/memory_info.table (Linux columns).
var memoryInfoSchema = Schema{
	Name:        "memory_info",
	Description: "Main memory information in bytes.",
	Columns: []Column{
		{Name: "memory_total", Type: TypeBigint},
		{Name: "memory_free", Type: TypeBigint},
		{Name: "memory_available", Type: TypeBigint},
		{Name: "buffers", Type: TypeBigint},
		{Name: "cached", Type: TypeBigint},
		{Name: "swap_cached", Type: TypeBigint},
		{Name: "active", Type: TypeBigint},
		{Name: "inactive", Type: TypeBigint},
		{Name: "swap_total", Type: TypeBigint},
		{Name: "swap_free", Type: TypeBigint},
	},
}

// genMemoryInfo gives /proc/meminfo's main figures in bytes.
func genMemoryInfo(q *queryCtx) ([]Row, error) {
	m := meminfo(q.fs)
	if len(m) == 0 {
		return nil, nil
	}
	r := Row{}
	for col, key := range map[string]string{
		"memory_total": "MemTotal", "memory_free": "MemFree", "memory_available": "MemAvailable",
		"buffers": "Buffers", "cached": "Cached", "swap_cached": "SwapCached", "active": "Active",
		"inactive": "Inactive", "swap_total": "SwapTotal", "swap_free": "SwapFree",
	} {
		if v, ok := m[key]; ok {
			r[col] = v
		}
	}
	return []Row{r}, nil
}
