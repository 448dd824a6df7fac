package table

import (
	"sort"
	"strconv"
	"strings"
)

// This file holds the small one-row host tables: system_info, os_version,
// uptime and kernel_info.

var systemInfoTable = &tableDef{schema: systemInfoSchema, gen: genSystemInfo}

// systemInfoSchema is specs/system_info.table (Linux columns).
var systemInfoSchema = Schema{
	Name:        "system_info",
	Description: "System information for identification.",
	Columns: []Column{
		{Name: "hostname", Type: TypeText},
		{Name: "uuid", Type: TypeText, Collate: "nocase"},
		{Name: "cpu_type", Type: TypeText},
		{Name: "cpu_subtype", Type: TypeText},
		{Name: "cpu_brand", Type: TypeText},
		{Name: "cpu_physical_cores", Type: TypeInteger},
		{Name: "cpu_logical_cores", Type: TypeInteger},
		{Name: "cpu_sockets", Type: TypeInteger},
		{Name: "cpu_microcode", Type: TypeText},
		{Name: "physical_memory", Type: TypeBigint},
		{Name: "hardware_vendor", Type: TypeText},
		{Name: "hardware_model", Type: TypeText},
		{Name: "hardware_version", Type: TypeText},
		{Name: "hardware_serial", Type: TypeText},
		{Name: "board_vendor", Type: TypeText},
		{Name: "board_model", Type: TypeText},
		{Name: "board_version", Type: TypeText},
		{Name: "board_serial", Type: TypeText},
		{Name: "computer_name", Type: TypeText},
		{Name: "local_hostname", Type: TypeText},
	},
}

var osVersionTable = &tableDef{schema: osVersionSchema, gen: genOSVersion}

// osVersionSchema is specs/os_version.table (Linux columns).
var osVersionSchema = Schema{
	Name:        "os_version",
	Description: "A single row containing the operating system name and version.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "version", Type: TypeText, Collate: "version"},
		{Name: "major", Type: TypeInteger},
		{Name: "minor", Type: TypeInteger},
		{Name: "patch", Type: TypeInteger},
		{Name: "build", Type: TypeText},
		{Name: "platform", Type: TypeText},
		{Name: "platform_like", Type: TypeText},
		{Name: "codename", Type: TypeText},
		{Name: "arch", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "mount_namespace_id", Type: TypeText, Hidden: true},
	},
}

var uptimeTable = &tableDef{schema: uptimeSchema, gen: genUptime}

// uptimeSchema is specs/uptime.table (Linux columns).
var uptimeSchema = Schema{
	Name:        "uptime",
	Description: "Track time passed since last boot. Some systems track this as calendar time, some as runtime.",
	Columns: []Column{
		{Name: "days", Type: TypeInteger},
		{Name: "hours", Type: TypeInteger},
		{Name: "minutes", Type: TypeInteger},
		{Name: "seconds", Type: TypeInteger},
		{Name: "total_seconds", Type: TypeBigint},
	},
}

var kernelInfoTable = &tableDef{schema: kernelInfoSchema, gen: genKernelInfo}

// kernelInfoSchema is specs/kernel_info.table (Linux columns).
var kernelInfoSchema = Schema{
	Name:        "kernel_info",
	Description: "Basic active kernel information.",
	Columns: []Column{
		{Name: "version", Type: TypeText, Collate: "version"},
		{Name: "arguments", Type: TypeText},
		{Name: "path", Type: TypeText},
		{Name: "device", Type: TypeText},
	},
}

// machine is uname's machine field, read from /proc/sys/kernel/arch so it
// follows the root.
func machine(f *rootFS) string {
	return strings.TrimSpace(f.ReadString("/proc/sys/kernel/arch"))
}

func hostname(f *rootFS) string {
	return strings.TrimSpace(f.ReadString("/proc/sys/kernel/hostname"))
}

func genSystemInfo(q *queryCtx) ([]Row, error) {
	f := q.fs
	h := hostname(f)
	r := Row{
		"hostname":       h,
		"computer_name":  h,
		"local_hostname": h,
		"cpu_type":       machine(f),
		"cpu_subtype":    "0",
	}
	uuid := strings.TrimSpace(f.ReadString("/sys/class/dmi/id/product_uuid"))
	if uuid == "" && q.e.opts.Info != nil {
		uuid = q.e.opts.Info().UUID
	}
	r["uuid"] = uuid

	logical := 0
	physical := map[string]bool{}
	sockets := map[string]bool{}
	var physID string
	for _, line := range f.Lines("/proc/cpuinfo") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			logical++
		case "model":
			r["cpu_subtype"] = v
		case "model name":
			r["cpu_brand"] = v
		case "microcode":
			r["cpu_microcode"] = v
		case "physical id":
			physID = v
			sockets[v] = true
		case "core id":
			physical[physID+"/"+v] = true
		}
	}
	if logical > 0 {
		r["cpu_logical_cores"] = logical
	} else {
		r["cpu_logical_cores"] = -1
	}
	if len(physical) > 0 {
		r["cpu_physical_cores"] = len(physical)
	} else {
		r["cpu_physical_cores"] = logical
	}
	if len(sockets) > 0 {
		r["cpu_sockets"] = len(sockets)
	}
	if mem := meminfo(f)["MemTotal"]; mem > 0 {
		r["physical_memory"] = mem
	} else {
		r["physical_memory"] = -1
	}
	dmi := func(col, file string) {
		r[col] = strings.TrimSpace(f.ReadString("/sys/class/dmi/id/" + file))
	}
	dmi("hardware_vendor", "sys_vendor")
	dmi("hardware_model", "product_name")
	dmi("hardware_version", "product_version")
	dmi("hardware_serial", "product_serial")
	dmi("board_vendor", "board_vendor")
	dmi("board_model", "board_name")
	dmi("board_version", "board_version")
	dmi("board_serial", "board_serial")
	return []Row{r}, nil
}

// meminfo parses /proc/meminfo into bytes.
func meminfo(f *rootFS) map[string]int64 {
	out := map[string]int64{}
	b, err := f.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for k, v := range keyValues(b, ':') {
		num, unit, _ := strings.Cut(v, " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			continue
		}
		if strings.TrimSpace(unit) == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}

// osReleaseColumns maps /etc/os-release keys to os_version columns.
var osReleaseColumns = map[string]string{
	"NAME": "name", "VERSION": "version", "BUILD_ID": "build", "ID": "platform",
	"ID_LIKE": "platform_like", "VERSION_CODENAME": "codename", "VERSION_ID": "_id",
}

func genOSVersion(q *queryCtx) ([]Row, error) {
	f := q.fs
	r := Row{"name": "Unknown", "major": 0, "minor": 0, "patch": 0, "platform": "posix"}
	for _, line := range f.Lines("/etc/os-release") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		col, known := osReleaseColumns[k]
		if !known {
			if !strings.Contains(k, "CODENAME") {
				continue
			}
			col = "codename" // distributions invent their own *CODENAME keys
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if col == "_id" {
			parts := strings.SplitN(v, ".", 3)
			for i, c := range []string{"major", "minor", "patch"} {
				if i < len(parts) {
					r[c] = parts[i]
				}
			}
			continue
		}
		r[col] = v
	}
	r["arch"] = machine(f)
	if rh := strings.TrimSpace(f.ReadString("/etc/redhat-release")); rh != "" {
		r["platform"], r["platform_like"] = "rhel", "rhel"
		r["version"], r["build"] = rh, ""
	}
	return []Row{r}, nil
}

func genUptime(q *queryCtx) ([]Row, error) {
	fields := strings.Fields(q.fs.ReadString("/proc/uptime"))
	if len(fields) == 0 {
		return nil, nil
	}
	secs, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return nil, nil
	}
	t := int64(secs)
	return []Row{{
		"days":          t / 86400,
		"hours":         t % 86400 / 3600,
		"minutes":       t % 3600 / 60,
		"seconds":       t % 60,
		"total_seconds": t,
	}}, nil
}

func genKernelInfo(q *queryCtx) ([]Row, error) {
	r := Row{}
	if b, err := q.fs.ReadFile("/proc/cmdline"); err == nil {
		var args []string
		for _, a := range strings.Fields(string(b)) {
			switch {
			case strings.HasPrefix(a, "BOOT_IMAGE="):
				r["path"] = strings.TrimPrefix(a, "BOOT_IMAGE=")
			case strings.HasPrefix(a, "root="):
				r["device"] = strings.TrimPrefix(a, "root=")
			default:
				args = append(args, a)
			}
		}
		r["arguments"] = strings.Join(args, " ")
	}
	if d := strings.Fields(q.fs.ReadString("/proc/version")); len(d) > 2 && d[1] == "version" {
		r["version"] = d[2]
	}
	return []Row{r}, nil
}

// sortedKeys is used by generators that emit maps in a stable order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
