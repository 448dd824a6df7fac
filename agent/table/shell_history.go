package table

import (
	"path"
	"regexp"
	"sort"
	"strings"
)

var shellHistoryTable = &tableDef{schema: shellHistorySchema, gen: genShellHistory}

// shellHistorySchema is specs/posix/shell_history.table (Linux columns).
var shellHistorySchema = Schema{
	Name:        "shell_history",
	Description: "A line-delimited (command) table of per-user .*_history data.",
	Columns: []Column{
		{Name: "uid", Type: TypeBigint},
		{Name: "time", Type: TypeInteger},
		{Name: "command", Type: TypeText},
		{Name: "history_file", Type: TypeText},
	},
}

var (
	shellHistoryFiles = []string{".bash_history", ".zsh_history", ".zhistory", ".history", ".sh_history"}
	bashTimestamp     = regexp.MustCompile(`^#([0-9]+)$`)
	zshTimestamp      = regexp.MustCompile(`^: {0,10}([0-9]{1,11}):[0-9]+;(.*)$`)
)

// genShellHistory reads each user's shell history files: bash "#<time>"
// lines stamp the next command, zsh extended history carries its own time.
func genShellHistory(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, u := range usersFromContext(q) {
		files := make([]string, 0, len(shellHistoryFiles))
		for _, n := range shellHistoryFiles {
			files = append(files, joinHome(u.home, n))
		}
		sessions := joinHome(u.home, ".bash_sessions")
		if ents, err := q.fs.ReadDir(sessions); err == nil {
			var extra []string
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".history") {
					extra = append(extra, path.Join(sessions, e.Name()))
				}
			}
			sort.Strings(extra)
			files = append(files, extra...)
		}
		for _, file := range files {
			if err := q.Err(); err != nil {
				return nil, err
			}
			b, err := q.fs.ReadFile(file)
			if err != nil {
				continue
			}
			rows = append(rows, parseHistory(string(b), u.uid, file)...)
		}
	}
	return rows, nil
}

func parseHistory(content, uid, file string) []Row {
	var rows []Row
	stamp := ""
	lines := strings.Split(content, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for _, line := range lines {
		if stamp == "" {
			if m := bashTimestamp.FindStringSubmatch(line); m != nil {
				stamp = m[1]
				continue
			}
		}
		r := Row{"uid": uid, "history_file": file}
		switch m := zshTimestamp.FindStringSubmatch(line); {
		case stamp != "":
			r["time"], r["command"] = stamp, line
			stamp = ""
		case m != nil:
			r["time"], r["command"] = m[1], m[2]
		default:
			r["time"], r["command"] = 0, line
		}
		rows = append(rows, r)
	}
	return rows
}
