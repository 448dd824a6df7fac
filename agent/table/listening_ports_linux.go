package table

var listeningPortsTable = &tableDef{schema: listeningPortsSchema, gen: genListeningPorts}

// listeningPortsSchema is specs/listening_ports.table (Linux columns).
var listeningPortsSchema = Schema{
	Name:        "listening_ports",
	Description: "Processes with listening (bound) network sockets/ports.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger},
		{Name: "port", Type: TypeInteger},
		{Name: "protocol", Type: TypeInteger},
		{Name: "family", Type: TypeInteger},
		{Name: "address", Type: TypeText},
		{Name: "fd", Type: TypeBigint},
		{Name: "socket", Type: TypeBigint},
		{Name: "path", Type: TypeText},
		{Name: "net_namespace", Type: TypeText},
	},
}

// genListeningPorts derives from process_open_sockets as osquery does:
// named unix sockets, inet sockets whose remote port is 0, and packet
// sockets (osquery lets those through too).
func genListeningPorts(q *queryCtx) ([]Row, error) {
	socks, err := genProcessOpenSockets(&queryCtx{ctx: q.ctx, fs: q.fs, log: q.log, e: q.e, s: q.s, table: processOpenSocketsTable})
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, s := range socks {
		fam := s["family"].(int)
		if fam == afUnix && s["path"] == "" {
			continue // anonymous unix socket
		}
		if (fam == afInet || fam == afInet6) && s["remote_port"].(int) != 0 {
			continue
		}
		r := Row{"pid": s["pid"], "protocol": s["protocol"], "family": fam, "fd": s["fd"], "net_namespace": s["net_namespace"]}
		if fam == afUnix {
			r["port"], r["path"], r["socket"] = 0, s["path"], 0
		} else {
			r["address"], r["port"], r["socket"] = s["local_address"], s["local_port"], s["socket"]
		}
		rows = append(rows, r)
	}
	return rows, nil
}
