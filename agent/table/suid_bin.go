package table

import (
	"io/fs"
	"path"
	"sort"
)

var suidBinTable = &tableDef{schema: suidBinSchema, gen: genSuidBin}

// suidBinSchema is specs/posix/suid_bin.table (Linux columns).
var suidBinSchema = Schema{
	Name:        "suid_bin",
	Description: "suid binaries in common locations.",
	Columns: []Column{
		{Name: "path", Type: TypeText},
		{Name: "username", Type: TypeText},
		{Name: "groupname", Type: TypeText},
		{Name: "permissions", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

// suidSearchDirs are walked recursively (a symlinked start directory, like
// /bin on merged-/usr systems, is followed and reported under its own
// name, as osquery does).
var suidSearchDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/tmp"}

// genSuidBin finds regular files with the setuid or setgid bit.
func genSuidBin(q *queryCtx) ([]Row, error) {
	users, groups := map[string]string{}, map[string]string{}
	for _, u := range readPasswd(q.fs) {
		if _, ok := users[u.uid]; !ok {
			users[u.uid] = u.name
		}
	}
	for _, g := range readGroup(q.fs) {
		if _, ok := groups[g.gid]; !ok {
			groups[g.gid] = g.name
		}
	}
	var rows []Row
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := q.Err(); err != nil {
			return err
		}
		ents, err := q.fs.ReadDir(dir)
		if err != nil {
			return nil
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			p := path.Join(dir, e.Name())
			if e.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			fi, err := q.fs.Stat(p) // follows symlinks, as is_regular_file does
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			m := fi.Mode()
			if m&(fs.ModeSetuid|fs.ModeSetgid) == 0 {
				continue
			}
			uid, gid := fileOwner(fi)
			perms := ""
			if m&fs.ModeSetuid != 0 {
				perms += "S"
			}
			if m&fs.ModeSetgid != 0 {
				perms += "G"
			}
			user, ok := users[uid]
			if !ok {
				user = uid
			}
			group, ok := groups[gid]
			if !ok {
				group = gid
			}
			rows = append(rows, Row{"path": p, "username": user, "groupname": group, "permissions": perms})
		}
		return nil
	}
	for _, d := range suidSearchDirs {
		if err := walk(d); err != nil {
			return nil, err
		}
	}
	return rows, nil
}
