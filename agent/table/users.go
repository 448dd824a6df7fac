package table

import (
	"strconv"
	"strings"
)

var usersTable = &tableDef{schema: usersSchema, gen: genUsers}

// usersSchema is specs/users.table (Linux columns).
var usersSchema = Schema{
	Name:        "users",
	Description: "Local user accounts (including domain accounts that have logged on locally (Windows)).",
	Columns: []Column{
		{Name: "uid", Type: TypeBigint, Index: true},
		{Name: "gid", Type: TypeBigint},
		{Name: "uid_signed", Type: TypeBigint},
		{Name: "gid_signed", Type: TypeBigint},
		{Name: "username", Type: TypeText},
		{Name: "description", Type: TypeText},
		{Name: "directory", Type: TypeText},
		{Name: "shell", Type: TypeText},
		{Name: "uuid", Type: TypeText, Index: true, Collate: "nocase"},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "include_remote", Type: TypeInteger, Hidden: true},
	},
}

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	name, uid, gid, gecos, home, shell string
}

// readPasswd parses /etc/passwd under the root. Only local accounts: NSS
// sources (LDAP, sssd) would need libc.
func readPasswd(f *rootFS) []passwdEntry {
	var out []passwdEntry
	for _, line := range f.Lines("/etc/passwd") {
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		p := strings.Split(line, ":")
		if len(p) < 7 {
			continue
		}
		out = append(out, passwdEntry{name: p[0], uid: p[2], gid: p[3], gecos: p[4], home: p[5], shell: p[6]})
	}
	return out
}

func genUsers(q *queryCtx) ([]Row, error) {
	uids := q.Eq("uid")
	names := q.Eq("username")
	var rows []Row
	for _, p := range readPasswd(q.fs) {
		if len(uids) > 0 && !contains(uids, p.uid) {
			continue
		}
		if len(names) > 0 && !contains(names, p.name) {
			continue
		}
		rows = append(rows, Row{
			"uid":         p.uid,
			"gid":         p.gid,
			"uid_signed":  signed32(p.uid),
			"gid_signed":  signed32(p.gid),
			"username":    p.name,
			"description": p.gecos,
			"directory":   p.home,
			"shell":       p.shell,
			"uuid":        "",
		})
	}
	return rows, nil
}

// signed32 is an id as a signed 32-bit integer, as osquery's *_signed
// columns show it (4294967294 becomes -2).
func signed32(s string) any {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return nil
	}
	return int64(int32(uint32(n)))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
