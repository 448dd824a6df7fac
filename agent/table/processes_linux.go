package table

import (
	"strconv"
	"strings"
)

// clkTck is USER_HZ, which the kernel fixes at 100 on every Linux
// architecture we build for (sysconf would need cgo).
const clkTck = 100

var processesTable = &tableDef{
	schema: processesSchema,
	gen:    genProcesses,
}

// processesSchema is specs/processes.table (Linux columns).
var processesSchema = Schema{
	Name:        "processes",
	Description: "All running processes on the host system.",
	Columns: []Column{
		{Name: "pid", Type: TypeBigint, Index: true},
		{Name: "name", Type: TypeText},
		{Name: "path", Type: TypeText},
		{Name: "cmdline", Type: TypeText},
		{Name: "state", Type: TypeText},
		{Name: "cwd", Type: TypeText},
		{Name: "root", Type: TypeText},
		{Name: "uid", Type: TypeBigint},
		{Name: "gid", Type: TypeBigint},
		{Name: "euid", Type: TypeBigint},
		{Name: "egid", Type: TypeBigint},
		{Name: "suid", Type: TypeBigint},
		{Name: "sgid", Type: TypeBigint},
		{Name: "on_disk", Type: TypeInteger},
		{Name: "wired_size", Type: TypeBigint},
		{Name: "resident_size", Type: TypeBigint},
		{Name: "total_size", Type: TypeBigint},
		{Name: "user_time", Type: TypeBigint},
		{Name: "system_time", Type: TypeBigint},
		{Name: "disk_bytes_read", Type: TypeBigint},
		{Name: "disk_bytes_written", Type: TypeBigint},
		{Name: "start_time", Type: TypeBigint},
		{Name: "parent", Type: TypeBigint},
		{Name: "pgroup", Type: TypeBigint},
		{Name: "threads", Type: TypeInteger},
		{Name: "nice", Type: TypeInteger},
		{Name: "cgroup_path", Type: TypeText},
	},
}

// genProcesses reads /proc. With WHERE pid = N only /proc/N is read.
// Processes that exit while we read them are skipped.
func genProcesses(q *queryCtx) ([]Row, error) {
	pids := procPids(q)
	boot := bootTime(q.fs)
	rows := make([]Row, 0, len(pids))
	for _, pid := range pids {
		if err := q.Err(); err != nil {
			return nil, err
		}
		if r := genProcess(q, pid, boot); r != nil {
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// procPids lists the pids to read: those of pid = constraints if any,
// otherwise every numeric entry of /proc.
func procPids(q *queryCtx) []string {
	if eq := q.Eq("pid"); len(eq) > 0 {
		out := make([]string, 0, len(eq))
		for _, p := range eq {
			if n, err := strconv.ParseInt(p, 10, 64); err == nil && n >= 0 {
				out = append(out, strconv.FormatInt(n, 10))
			}
		}
		return out
	}
	return allPids(q.fs)
}

func allPids(f *rootFS) []string {
	ents, err := f.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if _, err := strconv.ParseUint(n, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// bootTime is btime from /proc/stat (seconds since the epoch), 0 if unknown.
func bootTime(f *rootFS) int64 {
	for _, line := range f.Lines("/proc/stat") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// procStat is what we use of /proc/N/stat.
type procStat struct {
	comm                        string
	state, ppid, pgrp           string
	utime, stime, nice, threads string
	startTicks, vsize, rss      string
}

func readProcStat(f *rootFS, pid string) (procStat, bool) {
	b, err := f.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseProcStat(string(b))
}

// parseProcStat parses /proc/N/stat; comm may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStat(s string) (procStat, bool) {
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open || len(s) <= end+2 {
		return procStat{}, false
	}
	f := strings.Fields(s[end+2:])
	if len(f) <= 21 {
		return procStat{}, false
	}
	return procStat{
		comm: s[open+1 : end], state: f[0], ppid: f[1], pgrp: f[2],
		utime: f[11], stime: f[12], nice: f[16], threads: f[17],
		startTicks: f[19], vsize: f[20], rss: f[21],
	}, true
}

func genProcess(q *queryCtx, pid string, boot int64) Row {
	f := q.fs
	dir := "/proc/" + pid + "/"
	st, ok := readProcStat(f, pid)
	if !ok {
		return nil // gone, or not a process directory
	}
	sb, err := f.ReadFile(dir + "status")
	if err != nil {
		return nil
	}
	status := parseStatus(sb)
	r := Row{
		"pid":        pid,
		"parent":     st.ppid,
		"name":       status.name,
		"pgroup":     st.pgrp,
		"state":      st.state,
		"nice":       st.nice,
		"threads":    st.threads,
		"wired_size": 0, // Linux has no unpageable counter
	}
	if r["name"] == "" {
		r["name"] = st.comm
	}
	path := readLink(f, dir+"exe")
	r["on_disk"], path = onDisk(f, path)
	r["path"] = path
	if q.Used("cmdline") {
		r["cmdline"] = readCmdline(f, dir+"cmdline")
	}
	if q.Used("cgroup_path") {
		r["cgroup_path"] = parseCgroup(f.ReadString(dir + "cgroup"))
	}
	if q.Used("cwd") {
		r["cwd"] = readLink(f, dir+"cwd")
	}
	if q.Used("root") {
		r["root"] = readLink(f, dir+"root")
	}
	u, g := status.uid, status.gid
	r["uid"], r["euid"], r["suid"] = u[0], u[1], u[2]
	r["gid"], r["egid"], r["sgid"] = g[0], g[1], g[2]
	// osquery drops the " kB" unit and appends "000": kB * 1000.
	r["resident_size"] = kbTimes1000(status.vmRSS)
	r["total_size"] = kbTimes1000(status.vmSize)
	ut, _ := strconv.ParseUint(st.utime, 10, 64)
	stm, _ := strconv.ParseUint(st.stime, 10, 64)
	r["user_time"] = ut * (1000 / clkTck)
	r["system_time"] = stm * (1000 / clkTck)
	if ticks, err := strconv.ParseInt(st.startTicks, 10, 64); err == nil && boot > 0 {
		r["start_time"] = boot + ticks/clkTck
	} else {
		r["start_time"] = -1
	}
	if q.Used("disk_bytes_read") || q.Used("disk_bytes_written") {
		if ib, err := f.ReadFile(dir + "io"); err == nil {
			io := keyValues(ib, ':')
			r["disk_bytes_read"] = io["read_bytes"]
			w, _ := strconv.ParseInt(io["write_bytes"], 10, 64)
			c, _ := strconv.ParseInt(io["cancelled_write_bytes"], 10, 64)
			r["disk_bytes_written"] = w - c
		}
	}
	return r
}

func kbTimes1000(v string) any {
	v = strings.TrimSpace(strings.TrimSuffix(v, "kB"))
	if v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil
	}
	return n * 1000
}

func readLink(f *rootFS, p string) string {
	s, err := f.Readlink(p)
	if err != nil {
		return ""
	}
	return s
}

// readCmdline joins argv with spaces and trims, as osquery does.
func readCmdline(f *rootFS, p string) string {
	b, err := f.ReadFile(p)
	if err != nil {
		return ""
	}
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}

// onDisk is osquery's tristate: -1 unknown path, 1 exists, 0 deleted; a
// " (deleted)" suffix is removed when no file carries that very name.
func onDisk(f *rootFS, path string) (int, string) {
	if path == "" {
		return -1, path
	}
	if _, err := f.Stat(path); err == nil {
		return 1, path
	}
	return 0, strings.TrimSuffix(path, " (deleted)")
}

// parseCgroup returns the path of the first line of /proc/N/cgroup
// ("0::/user.slice" or "2:cpu:/user.slice").
func parseCgroup(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	_, rest, ok := strings.Cut(line, ":")
	if !ok {
		return ""
	}
	_, path, ok := strings.Cut(rest, ":")
	if !ok {
		return ""
	}
	return path
}

// procStatus is what we use of /proc/N/status.
type procStatus struct {
	name, vmRSS, vmSize string
	uid, gid            [3]string // real, effective, saved
}

// parseStatus picks the few lines we need; building a map of all ~55
// lines cost more than reading the file.
func parseStatus(b []byte) procStatus {
	var st procStatus
	s := string(b)
	for len(s) > 0 {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Name":
			st.name = strings.TrimSpace(v)
		case "VmRSS":
			st.vmRSS = strings.TrimSpace(v)
		case "VmSize":
			st.vmSize = strings.TrimSpace(v)
		case "Uid", "Gid":
			f := strings.Fields(v)
			if len(f) == 4 {
				ids := [3]string{f[0], f[1], f[2]}
				if k == "Uid" {
					st.uid = ids
				} else {
					st.gid = ids
				}
			}
		}
	}
	return st
}
