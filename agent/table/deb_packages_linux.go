package table

import "strings"

var debPackagesTable = &tableDef{schema: debPackagesSchema, gen: genDebPackages}

// debPackagesSchema is specs/linux/deb_packages.table (Linux columns).
var debPackagesSchema = Schema{
	Name:        "deb_packages",
	Description: "The installed DEB package database.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "version", Type: TypeText, Collate: "version_dpkg"},
		{Name: "source", Type: TypeText},
		{Name: "size", Type: TypeBigint},
		{Name: "arch", Type: TypeText},
		{Name: "revision", Type: TypeText},
		{Name: "status", Type: TypeText},
		{Name: "maintainer", Type: TypeText},
		{Name: "section", Type: TypeText},
		{Name: "priority", Type: TypeText},
		{Name: "admindir", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "mount_namespace_id", Type: TypeText, Hidden: true},
	},
}

const dpkgAdminDir = "/var/lib/dpkg"

// genDebPackages parses <admindir>/status (RFC 822-style stanzas), for
// /var/lib/dpkg or the admindir = constraints. Packages dpkg only
// remembers as "not-installed" are left out.
func genDebPackages(q *queryCtx) ([]Row, error) {
	dirs := q.Eq("admindir")
	if len(dirs) == 0 {
		dirs = []string{dpkgAdminDir}
	}
	var rows []Row
	for _, dir := range dirs {
		b, err := q.fs.ReadFile(strings.TrimSuffix(dir, "/") + "/status")
		if err != nil {
			q.log.Debug("reading dpkg status", "admindir", dir, "err", err)
			continue
		}
		for _, st := range parseStanzas(string(b)) {
			if st["Package"] == "" {
				continue
			}
			status := st["Status"]
			if f := strings.Fields(status); len(f) == 3 && f[2] == "not-installed" {
				continue
			}
			version := st["Version"]
			revision := ""
			if i := strings.LastIndexByte(version, '-'); i >= 0 {
				revision = version[i+1:]
			}
			rows = append(rows, Row{
				"name": st["Package"], "version": version, "source": st["Source"],
				"size": st["Installed-Size"], "arch": st["Architecture"], "revision": revision,
				"status": status, "maintainer": st["Maintainer"], "section": st["Section"],
				"priority": st["Priority"], "admindir": dir,
			})
		}
	}
	return rows, nil
}

// parseStanzas splits a Debian control file into field maps; continuation
// lines (leading space) are kept out: we use only single-line fields.
func parseStanzas(s string) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string]string{}
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			cur[k] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
