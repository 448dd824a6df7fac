package table

import (
	"fmt"
	"io/fs"
	"path"
	"syscall"
)

var fileTable = &tableDef{schema: fileSchema, gen: genFile}

// fileSchema is specs/utility/file.table (Linux columns).
var fileSchema = Schema{
	Name:        "file",
	Description: "Interactive filesystem attributes and metadata.",
	Columns: []Column{
		{Name: "path", Type: TypeText, Required: true, Index: true},
		{Name: "directory", Type: TypeText, Required: true},
		{Name: "filename", Type: TypeText},
		{Name: "inode", Type: TypeBigint},
		{Name: "uid", Type: TypeBigint},
		{Name: "gid", Type: TypeBigint},
		{Name: "mode", Type: TypeText},
		{Name: "device", Type: TypeBigint},
		{Name: "size", Type: TypeBigint},
		{Name: "block_size", Type: TypeInteger},
		{Name: "atime", Type: TypeBigint},
		{Name: "mtime", Type: TypeBigint},
		{Name: "ctime", Type: TypeBigint},
		{Name: "btime", Type: TypeBigint},
		{Name: "hard_links", Type: TypeInteger},
		{Name: "symlink", Type: TypeInteger},
		{Name: "type", Type: TypeText},
		{Name: "symlink_target_path", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "mount_namespace_id", Type: TypeText, Hidden: true},
	},
}

// genFile lstat()s and stat()s each target: symlink says what the link
// itself is, the other columns describe what it points to (or the link,
// when dangling).
func genFile(q *queryCtx) ([]Row, error) {
	targets, err := targetPaths(q)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, t := range targets {
		if err := q.Err(); err != nil {
			return nil, err
		}
		if r := fileRow(q.fs, t[0]); r != nil {
			r["directory"] = t[1]
			rows = append(rows, r)
		}
	}
	return rows, nil
}

func fileRow(f *rootFS, p string) Row {
	lfi, err := f.Lstat(p)
	if err != nil {
		return nil
	}
	fi := lfi
	if lfi.Mode()&fs.ModeSymlink != 0 {
		if sfi, err := f.Stat(p); err == nil {
			fi = sfi
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	r := Row{
		"path":                p,
		"filename":            path.Base(p),
		"inode":               st.Ino,
		"uid":                 st.Uid,
		"gid":                 st.Gid,
		"mode":                fmt.Sprintf("%04o", st.Mode&0o7777),
		"device":              st.Rdev,
		"size":                st.Size,
		"block_size":          st.Blksize,
		"atime":               st.Atim.Sec,
		"mtime":               st.Mtim.Sec,
		"ctime":               st.Ctim.Sec,
		"btime":               0,
		"hard_links":          st.Nlink,
		"symlink":             0,
		"type":                fileType(st.Mode),
		"symlink_target_path": "",
	}
	if lfi.Mode()&fs.ModeSymlink != 0 {
		r["symlink"] = 1
		if t, err := f.Readlink(p); err == nil {
			r["symlink_target_path"] = t
		}
	}
	return r
}

func fileType(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "regular"
	case syscall.S_IFDIR:
		return "directory"
	case syscall.S_IFLNK:
		return "symlink"
	case syscall.S_IFCHR:
		return "character"
	case syscall.S_IFBLK:
		return "block"
	case syscall.S_IFIFO:
		return "fifo"
	case syscall.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}
