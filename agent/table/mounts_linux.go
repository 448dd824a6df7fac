package table

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

var mountsTable = &tableDef{schema: mountsSchema, gen: genMounts}

// mountsSchema is specs/posix/mounts.table (Linux columns).
var mountsSchema = Schema{
	Name:        "mounts",
	Description: "System mounted devices and filesystems (not process specific).",
	Columns: []Column{
		{Name: "device", Type: TypeText},
		{Name: "device_alias", Type: TypeText},
		{Name: "path", Type: TypeText},
		{Name: "type", Type: TypeText},
		{Name: "blocks_size", Type: TypeBigint},
		{Name: "blocks", Type: TypeBigint},
		{Name: "blocks_free", Type: TypeBigint},
		{Name: "blocks_available", Type: TypeBigint},
		{Name: "inodes", Type: TypeBigint},
		{Name: "inodes_free", Type: TypeBigint},
		{Name: "flags", Type: TypeText},
	},
}

// genMounts reads /proc/mounts and statfs(2)s each mount point.
func genMounts(q *queryCtx) ([]Row, error) {
	var rows []Row
	for _, line := range q.fs.Lines("/proc/mounts") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		dev, mnt, typ, opts := unescapeMount(f[0]), unescapeMount(f[1]), f[2], f[3]
		r := Row{"device": dev, "device_alias": dev, "path": mnt, "type": typ, "flags": opts}
		if strings.HasPrefix(dev, "/") {
			if real, err := filepath.EvalSymlinks(q.fs.real(dev)); err == nil {
				r["device_alias"] = q.fs.hostPath(real)
			}
		}
		// autofs mount points would be triggered by statfs.
		if typ != "autofs" {
			var st syscall.Statfs_t
			if err := syscall.Statfs(q.fs.real(mnt), &st); err == nil {
				r["blocks_size"] = int64(st.Bsize)
				r["blocks"] = st.Blocks
				r["blocks_free"] = st.Bfree
				r["blocks_available"] = st.Bavail
				r["inodes"] = st.Files
				r["inodes_free"] = st.Ffree
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// unescapeMount decodes the octal escapes (\040 for space) of
// /proc/mounts fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
