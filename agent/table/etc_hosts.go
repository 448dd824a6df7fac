package table

import "strings"

var etcHostsTable = &tableDef{schema: etcHostsSchema, gen: genEtcHosts, aliases: []string{"hosts"}}

// etcHostsSchema is specs/etc_hosts.table (Linux columns).
var etcHostsSchema = Schema{
	Name:        "etc_hosts",
	Description: "Line-parsed /etc/hosts.",
	Columns: []Column{
		{Name: "address", Type: TypeText},
		{Name: "hostnames", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

// genEtcHosts parses /etc/hosts: one row per line with an address; the
// hostnames up to a comment, joined by one space.
func genEtcHosts(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/etc/hosts") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var names []string
		for _, n := range f[1:] {
			if strings.HasPrefix(n, "#") {
				break
			}
			names = append(names, n)
		}
		rows = append(rows, Row{"address": f[0], "hostnames": strings.Join(names, " ")})
	}
	return rows, nil
}
