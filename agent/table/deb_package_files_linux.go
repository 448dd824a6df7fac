package table

import (
	"sort"
	"strings"
)

var debPackageFilesTable = &tableDef{schema: debPackageFilesSchema, gen: genDebPackageFiles}

// debPackageFilesSchema is specs/linux/deb_package_files.table (Linux columns).
var debPackageFilesSchema = Schema{
	Name:        "deb_package_files",
	Description: "Installed files from DEB packages that are currently installed on the system.",
	Columns: []Column{
		{Name: "package", Type: TypeText, Index: true},
		{Name: "path", Type: TypeText, Index: true},
		{Name: "admindir", Type: TypeText},
	},
}

// genDebPackageFiles lists <admindir>/info/<package>[:<arch>].list, the
// files dpkg installed for each package.
func genDebPackageFiles(q *queryCtx) ([]Row, error) {
	dirs := q.Eq("admindir")
	if len(dirs) == 0 {
		dirs = []string{dpkgAdminDir}
	}
	pkgs := q.Eq("package")
	var rows []Row
	for _, dir := range dirs {
		info := strings.TrimSuffix(dir, "/") + "/info"
		ents, err := q.fs.ReadDir(info)
		if err != nil {
			continue
		}
		var lists []string
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".list") {
				lists = append(lists, e.Name())
			}
		}
		sort.Strings(lists)
		for _, l := range lists {
			if err := q.Err(); err != nil {
				return nil, err
			}
			pkg, _, _ := strings.Cut(strings.TrimSuffix(l, ".list"), ":")
			if len(pkgs) > 0 && !contains(pkgs, pkg) {
				continue
			}
			for _, p := range q.fs.Lines(info + "/" + l) {
				if p != "" {
					rows = append(rows, Row{"package": pkg, "path": p, "admindir": dir})
				}
			}
		}
	}
	return rows, nil
}
