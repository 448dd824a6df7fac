package table

import (
	"strconv"
	"strings"
)

var arpCacheTable = &tableDef{schema: arpCacheSchema, gen: genArpCache}

// arpCacheSchema is specs/arp_cache.table (Linux columns).
var arpCacheSchema = Schema{
	Name:        "arp_cache",
	Description: "Address resolution cache, both static and dynamic (from ARP, NDP).",
	Columns: []Column{
		{Name: "address", Type: TypeText},
		{Name: "mac", Type: TypeText, Collate: "nocase"},
		{Name: "interface", Type: TypeText},
		{Name: "permanent", Type: TypeText},
	},
}

// atfPerm is ATF_PERM of the ARP flags column.
const atfPerm = 0x4

// genArpCache parses /proc/net/arp:
// "IP address  HW type  Flags  HW address  Mask  Device".
func genArpCache(q *queryCtx) ([]Row, error) {
	var rows []Row
	for i, line := range q.fs.Lines("/proc/net/arp") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 6 {
			continue
		}
		perm := "0"
		if fl, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 32); err == nil && fl&atfPerm != 0 {
			perm = "1"
		}
		rows = append(rows, Row{"address": f[0], "mac": f[3], "interface": f[5], "permanent": perm})
	}
	return rows, nil
}
