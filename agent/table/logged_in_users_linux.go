package table

var loggedInUsersTable = &tableDef{schema: loggedInUsersSchema, gen: genLoggedInUsers}

// loggedInUsersSchema is specs/logged_in_users.table (Linux columns).
var loggedInUsersSchema = Schema{
	Name:        "logged_in_users",
	Description: "Users with an active shell on the system.",
	Columns: []Column{
		{Name: "type", Type: TypeText},
		{Name: "user", Type: TypeText},
		{Name: "tty", Type: TypeText},
		{Name: "host", Type: TypeText},
		{Name: "time", Type: TypeBigint},
		{Name: "pid", Type: TypeInteger},
	},
}

var loginTypes = map[int16]string{
	utEmpty: "empty", utBootTime: "boot_time", utNewTime: "new_time", utOldTime: "old_time",
	utInitProcess: "init", utLoginProcess: "login", utUserProcess: "user", utDeadProcess: "dead",
	utRunLvl: "runlevel", utAccounting: "accounting",
}

// genLoggedInUsers reads every utmp record except those of pid 1.
func genLoggedInUsers(q *queryCtx) ([]Row, error) {
	b, err := q.fs.ReadFile("/var/run/utmp")
	if err != nil {
		return nil, nil
	}
	var rows []Row
	for _, u := range parseUtmp(b) {
		if u.pid == 1 {
			continue
		}
		typ, ok := loginTypes[u.typ]
		if !ok {
			typ = "unknown"
		}
		rows = append(rows, Row{"type": typ, "user": u.user, "tty": u.line, "host": u.host, "time": u.sec, "pid": u.pid})
	}
	return rows, nil
}
