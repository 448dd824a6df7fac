package table

import (
	"strconv"
	"syscall"
)

var ulimitInfoTable = &tableDef{schema: ulimitInfoSchema, gen: genUlimitInfo}

// ulimitInfoSchema is specs/posix/ulimit_info.table (Linux columns).
var ulimitInfoSchema = Schema{
	Name:        "ulimit_info",
	Description: "System resource usage limits.",
	Columns: []Column{
		{Name: "type", Type: TypeText},
		{Name: "soft_limit", Type: TypeText},
		{Name: "hard_limit", Type: TypeText},
	},
}

// rlimits are Linux's resource numbers, in osquery's (alphabetical) order.
var rlimits = []struct {
	name string
	res  int
}{
	{"as", 9}, {"core", 4}, {"cpu", 0}, {"data", 2}, {"fsize", 1}, {"locks", 10}, {"memlock", 8},
	{"msgqueue", 12}, {"nice", 13}, {"nofile", 7}, {"nproc", 6}, {"rss", 5}, {"rtprio", 14},
	{"sigpending", 11}, {"stack", 3},
}

const rlimInfinity = ^uint64(0)

// genUlimitInfo gives the agent's own resource limits (getrlimit(2)).
func genUlimitInfo(q *queryCtx) ([]Row, error) {
	lim := func(v uint64) string {
		if v == rlimInfinity {
			return "unlimited"
		}
		return strconv.FormatUint(v, 10)
	}
	var rows []Row
	for _, rl := range rlimits {
		var r syscall.Rlimit
		if err := syscall.Getrlimit(rl.res, &r); err != nil {
			continue
		}
		rows = append(rows, Row{"type": rl.name, "soft_limit": lim(r.Cur), "hard_limit": lim(r.Max)})
	}
	return rows, nil
}
