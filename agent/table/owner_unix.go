//go:build unix

package table

import (
	"io/fs"
	"strconv"
	"syscall"
)

// fileOwner returns the uid and gid of a file as decimal strings.
func fileOwner(fi fs.FileInfo) (string, string) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	}
	return "", ""
}
