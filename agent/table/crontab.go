package table

import (
	"sort"
	"strings"
)

var crontabTable = &tableDef{schema: crontabSchema, gen: genCrontab}

// crontabSchema is specs/posix/crontab.table (Linux columns).
var crontabSchema = Schema{
	Name:        "crontab",
	Description: "Line parsed values from system and user cron/tab.",
	Columns: []Column{
		{Name: "event", Type: TypeText},
		{Name: "minute", Type: TypeText},
		{Name: "hour", Type: TypeText},
		{Name: "day_of_month", Type: TypeText},
		{Name: "month", Type: TypeText},
		{Name: "day_of_week", Type: TypeText},
		{Name: "command", Type: TypeText},
		{Name: "path", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

// cronDirs hold per-user and drop-in crontabs.
var cronDirs = []string{"/etc/cron.d/", "/var/at/tabs/", "/var/spool/cron/", "/var/spool/cron/crontabs/"}

// genCrontab reads /etc/crontab and the files of cronDirs: one row per
// schedule line (@event lines skip the five time fields).
func genCrontab(q *queryCtx) ([]Row, error) {
	files := []string{"/etc/crontab"}
	for _, d := range cronDirs {
		ents, err := q.fs.ReadDir(d)
		if err != nil {
			continue
		}
		var names []string
		for _, e := range ents {
			if !e.IsDir() {
				names = append(names, d+e.Name())
			}
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	var rows []Row
	for _, file := range files {
		lines, _ := trimmedLines(q.fs, file)
		for _, line := range lines {
			if line[0] == '#' {
				continue
			}
			if r := cronLine(line); r != nil {
				r["path"] = file
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

func cronLine(line string) Row {
	r := Row{}
	cols := []string{"minute", "hour", "day_of_month", "month", "day_of_week"}
	var cmd []string
	idx := 0
	for _, f := range strings.Fields(line) {
		switch {
		case idx == 0 && f[0] == '@':
			r["event"] = f
			idx = 5
			continue
		case idx < 5:
			r[cols[idx]] = f
		default:
			cmd = append(cmd, f)
		}
		idx++
	}
	if len(cmd) == 0 {
		return nil // a variable assignment or a malformed line
	}
	r["command"] = strings.Join(cmd, " ")
	return r
}
