package table

import (
	"path"
	"sort"
	"strings"
)

var sudoersTable = &tableDef{schema: sudoersSchema, gen: genSudoers}

// sudoersSchema is specs/posix/sudoers.table (Linux columns).
var sudoersSchema = Schema{
	Name:        "sudoers",
	Description: "Rules for running commands as other users via sudo.",
	Columns: []Column{
		{Name: "source", Type: TypeText},
		{Name: "header", Type: TypeText},
		{Name: "rule_details", Type: TypeText},
	},
}

// sudoersMaxNest is sudoers(5)'s limit on nested includes.
const sudoersMaxNest = 128

// genSudoers splits each rule of /etc/sudoers and its includes into the
// leading token and the rest, following #include/@include(dir).
func genSudoers(q *queryCtx) ([]Row, error) {
	var rows []Row
	sudoersFile(q.fs, "/etc/sudoers", 1, &rows)
	return rows, nil
}

const sudoSpace = "\t\v "

func sudoersFile(f *rootFS, file string, level int, rows *[]Row) {
	if level > sudoersMaxNest {
		return
	}
	b, err := f.ReadFile(file)
	if err != nil {
		return
	}
	long := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.Trim(line, sudoSpace)
		if line == "" {
			continue
		}
		if long && len(*rows) > 0 {
			// A trailing backslash continued the previous rule.
			long = strings.HasSuffix(line, `\`)
			last := (*rows)[len(*rows)-1]
			if d := last["rule_details"].(string); d == "" {
				h := last["header"].(string)
				last["header"] = h[:len(h)-1]
			} else {
				last["rule_details"] = d[:len(d)-1]
			}
			last["rule_details"] = last["rule_details"].(string) + line
			continue
		}
		header, details := line, ""
		if i := strings.IndexAny(line, sudoSpace); i >= 0 {
			header, details = line[:i], strings.Trim(line[i:], sudoSpace)
		}
		include := header == "#include" || header == "@include"
		includeDir := header == "#includedir" || header == "@includedir"
		if line[0] == '#' && !include && !includeDir {
			continue // comment
		}
		if details == "" && (include || includeDir) {
			continue
		}
		if !include && !includeDir && strings.HasSuffix(line, `\`) {
			long = true
		}
		*rows = append(*rows, Row{"header": header, "source": file, "rule_details": details})
		target := details
		if (include || includeDir) && !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(file), target)
		}
		switch {
		case includeDir:
			ents, err := f.ReadDir(target)
			if err != nil {
				continue
			}
			names := make([]string, 0, len(ents))
			for _, e := range ents {
				n := e.Name()
				// sudoers(5): names containing '.' or ending in '~' are skipped.
				if e.IsDir() || strings.Contains(n, ".") || strings.HasSuffix(n, "~") {
					continue
				}
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				level++
				sudoersFile(f, path.Join(target, n), level, rows)
			}
		case include:
			level++
			sudoersFile(f, target, level, rows)
		}
	}
}
