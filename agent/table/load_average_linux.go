package table

import (
	"strconv"
	"strings"
)

var loadAverageTable = &tableDef{schema: loadAverageSchema, gen: genLoadAverage}

// loadAverageSchema is specs/posix/load_average.table (Linux columns).
var loadAverageSchema = Schema{
	Name:        "load_average",
	Description: "Displays information about the system wide load averages.",
	Columns: []Column{
		{Name: "period", Type: TypeText},
		{Name: "average", Type: TypeText},
	},
}

// genLoadAverage reads /proc/loadavg; averages are printed with six
// decimals as osquery's std::to_string does.
func genLoadAverage(q *queryCtx) ([]Row, error) {
	f := strings.Fields(q.fs.ReadString("/proc/loadavg"))
	if len(f) < 3 {
		return nil, nil
	}
	var rows []Row
	for i, period := range []string{"1m", "5m", "15m"} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			continue
		}
		rows = append(rows, Row{"period": period, "average": strconv.FormatFloat(v, 'f', 6, 64)})
	}
	return rows, nil
}
