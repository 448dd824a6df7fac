package table

import "strings"

var etcProtocolsTable = &tableDef{schema: etcProtocolsSchema, gen: genEtcProtocols}

// etcProtocolsSchema is specs/etc_protocols.table (Linux columns).
var etcProtocolsSchema = Schema{
	Name:        "etc_protocols",
	Description: "Line-parsed /etc/protocols.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "number", Type: TypeInteger},
		{Name: "alias", Type: TypeText},
		{Name: "comment", Type: TypeText},
	},
}

// genEtcProtocols parses /etc/protocols: "name number [alias...] [# comment]";
// the first alias only, and comment parts joined by " # ", as osquery does.
func genEtcProtocols(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/etc/protocols") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var parts []string
		for _, p := range strings.Split(line, "#") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		if len(parts) == 0 {
			continue
		}
		f := strings.Fields(parts[0])
		if len(f) < 2 {
			continue
		}
		r := Row{"name": f[0], "number": f[1]}
		if len(f) > 2 {
			r["alias"] = f[2]
		}
		if len(parts) > 1 {
			r["comment"] = strings.Join(parts[1:], " # ")
		}
		rows = append(rows, r)
	}
	return rows, nil
}
