package table

import (
	"path"
	"sort"
	"strings"
)

var systemControlsTable = &tableDef{schema: systemControlsSchema, gen: genSystemControls}

// systemControlsSchema is specs/posix/system_controls.table (Linux columns).
var systemControlsSchema = Schema{
	Name:        "system_controls",
	Description: "sysctl names, values, and settings information.",
	Columns: []Column{
		{Name: "name", Type: TypeText, Index: true},
		{Name: "oid", Type: TypeText},
		{Name: "subsystem", Type: TypeText},
		{Name: "current_value", Type: TypeText},
		{Name: "config_value", Type: TypeText},
		{Name: "type", Type: TypeText},
	},
}

// sysctlConfigs are read in order, later files overriding earlier ones.
var sysctlConfigs = []string{"/run/sysctl.d", "/etc/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d", "/etc/sysctl.conf"}

// genSystemControls walks /proc/sys (or reads the name = / subsystem =
// constraints' entries) and pairs each value with what sysctl.conf files
// set.
func genSystemControls(q *queryCtx) ([]Row, error) {
	config := sysctlConfig(q.fs)
	var rows []Row
	var walk func(p string) error
	walk = func(p string) error {
		if err := q.Err(); err != nil {
			return err
		}
		fi, err := q.fs.Stat(p)
		if err != nil {
			return nil
		}
		if fi.IsDir() {
			ents, err := q.fs.ReadDir(p)
			if err != nil {
				return nil
			}
			sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
			for _, e := range ents {
				if err := walk(path.Join(p, e.Name())); err != nil {
					return err
				}
			}
			return nil
		}
		name := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
		r := Row{"name": name, "oid": "", "subsystem": strings.SplitN(name, ".", 2)[0], "type": "string"}
		if b, err := q.fs.ReadFile(p); err == nil {
			r["current_value"] = strings.TrimSpace(string(b))
		}
		if v, ok := config[name]; ok {
			r["config_value"] = v
		}
		rows = append(rows, r)
		return nil
	}
	names, subs := q.Eq("name"), q.Eq("subsystem")
	switch {
	case len(names) > 0:
		for _, n := range names {
			if strings.Contains(n, "..") || strings.HasPrefix(n, "/") {
				continue
			}
			if err := walk("/proc/sys/" + strings.ReplaceAll(n, ".", "/")); err != nil {
				return nil, err
			}
		}
	default:
		ents, _ := q.fs.ReadDir("/proc/sys")
		for _, e := range ents {
			if len(subs) > 0 && !contains(subs, e.Name()) {
				continue
			}
			if err := walk("/proc/sys/" + e.Name()); err != nil {
				return nil, err
			}
		}
	}
	return rows, nil
}

// sysctlConfig reads "key = value" settings (keys may use / or .).
func sysctlConfig(f *rootFS) map[string]string {
	out := map[string]string{}
	var files []string
	for _, p := range sysctlConfigs {
		if ents, err := f.ReadDir(p); err == nil {
			var names []string
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), ".conf") {
					names = append(names, path.Join(p, e.Name()))
				}
			}
			sort.Strings(names)
			files = append(files, names...)
		} else {
			files = append(files, p)
		}
	}
	for _, file := range files {
		for _, line := range f.Lines(file) {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			k = strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(k), "-"), "/", ".")
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
