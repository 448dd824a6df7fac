package table

import "strings"

var etcServicesTable = &tableDef{schema: etcServicesSchema, gen: genEtcServices}

// etcServicesSchema is specs/etc_services.table (Linux columns).
var etcServicesSchema = Schema{
	Name:        "etc_services",
	Description: "Line-parsed /etc/services.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "port", Type: TypeInteger},
		{Name: "protocol", Type: TypeText},
		{Name: "aliases", Type: TypeText},
		{Name: "comment", Type: TypeText},
	},
}

// genEtcServices parses /etc/services: "name port/protocol [aliases] [# comment]".
func genEtcServices(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/etc/services") {
		body, comment, hasComment := strings.Cut(line, "#")
		f := strings.Fields(body)
		if len(f) < 2 {
			continue
		}
		port, proto, ok := strings.Cut(f[1], "/")
		if !ok {
			continue
		}
		r := Row{"name": f[0], "port": port, "protocol": proto, "aliases": strings.Join(f[2:], " ")}
		if hasComment {
			r["comment"] = strings.TrimSpace(comment)
		}
		rows = append(rows, r)
	}
	return rows, nil
}
