package table

import (
	"regexp"
	"strconv"
	"strings"
)

var shadowTable = &tableDef{schema: shadowSchema, gen: genShadow}

// shadowSchema is specs/linux/shadow.table (Linux columns).
var shadowSchema = Schema{
	Name:        "shadow",
	Description: "Local system users encrypted passwords and related information. Please note, that you usually need superuser rights to access `/etc/shadow`.",
	Columns: []Column{
		{Name: "password_status", Type: TypeText},
		{Name: "hash_alg", Type: TypeText},
		{Name: "last_change", Type: TypeBigint},
		{Name: "min", Type: TypeBigint},
		{Name: "max", Type: TypeBigint},
		{Name: "warning", Type: TypeBigint},
		{Name: "inactive", Type: TypeBigint},
		{Name: "expire", Type: TypeBigint},
		{Name: "flag", Type: TypeBigint},
		{Name: "username", Type: TypeText, Index: true},
	},
}

var hashAlg = regexp.MustCompile(`^\$(\w+)\$`)

// genShadow parses /etc/shadow (root only). Empty numeric fields are -1,
// as getspent reports them. Password hashes never leave this function.
func genShadow(q *queryCtx) ([]Row, error) {
	names := q.Eq("username")
	var rows []Row
	for _, line := range q.fs.Lines("/etc/shadow") {
		f := strings.Split(line, ":")
		if len(f) < 9 || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(names) > 0 && !contains(names, f[0]) {
			continue
		}
		num := func(s string) int64 {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
		r := Row{
			"username": f[0], "last_change": num(f[2]), "min": num(f[3]), "max": num(f[4]),
			"warning": num(f[5]), "inactive": num(f[6]), "expire": num(f[7]), "flag": num(f[8]),
		}
		pw := f[1]
		switch {
		case pw == "!!":
			r["password_status"] = "not_set"
		case pw == "":
			r["password_status"] = "empty"
		case pw[0] == '!' || pw[0] == '*' || pw[0] == 'x':
			r["password_status"] = "locked"
		default:
			r["password_status"] = "active"
		}
		if m := hashAlg.FindStringSubmatch(pw); m != nil {
			r["hash_alg"] = m[1]
		}
		rows = append(rows, r)
	}
	return rows, nil
}
