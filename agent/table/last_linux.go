package table

var lastTable = &tableDef{schema: lastSchema, gen: genLast}

// lastSchema is specs/posix/last.table (Linux columns).
var lastSchema = Schema{
	Name:        "last",
	Description: "System logins and logouts.",
	Columns: []Column{
		{Name: "username", Type: TypeText},
		{Name: "tty", Type: TypeText},
		{Name: "pid", Type: TypeInteger},
		{Name: "type", Type: TypeInteger},
		{Name: "type_name", Type: TypeText},
		{Name: "time", Type: TypeInteger},
		{Name: "host", Type: TypeText},
	},
}

var lastTypeNames = map[int16]string{
	utEmpty: "empty", utRunLvl: "run-level", utBootTime: "boot-time", utNewTime: "new-time",
	utOldTime: "old-time", utInitProcess: "init-process", utLoginProcess: "login-process",
	utUserProcess: "user-process", utDeadProcess: "dead-process",
}

// genLast reads the login and logout records of /var/log/wtmp.
func genLast(q *queryCtx) ([]Row, error) {
	b, err := q.fs.ReadFile("/var/log/wtmp")
	if err != nil {
		return nil, nil
	}
	var rows []Row
	for _, u := range parseUtmp(b) {
		if u.typ != utUserProcess && u.typ != utDeadProcess {
			continue
		}
		rows = append(rows, Row{
			"username": u.user, "tty": u.line, "pid": u.pid, "type": u.typ,
			"type_name": lastTypeNames[u.typ], "time": u.sec, "host": u.host,
		})
	}
	return rows, nil
}
