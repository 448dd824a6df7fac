package table

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// rootFS reads the host's files under a root directory so that tests can
// point every table at a fixture tree. Paths given to it are absolute host
// paths ("/proc/1/stat").
type rootFS struct {
	root string
	// onOpen, when set (tests only), sees every path read.
	onOpen func(path string)
}

func newRootFS(root string) *rootFS {
	if root == "" {
		root = "/"
	}
	return &rootFS{root: filepath.Clean(root)}
}

// real maps a host path to the path to open.
func (f *rootFS) real(p string) string {
	if f.root == "/" {
		return p
	}
	// Cleaning as an absolute path first keeps ".." from leaving the root.
	return filepath.Join(f.root, filepath.Clean("/"+p))
}

// hostPath maps a path to open back to the host path it stands for.
func (f *rootFS) hostPath(real string) string {
	if f.root == "/" {
		return real
	}
	rel, err := filepath.Rel(f.root, real)
	if err != nil || strings.HasPrefix(rel, "..") {
		return real
	}
	return "/" + filepath.ToSlash(rel)
}

func (f *rootFS) seen(p string) {
	if f.onOpen != nil {
		f.onOpen(p)
	}
}

func (f *rootFS) ReadFile(p string) ([]byte, error) {
	f.seen(p)
	return readFile(f.real(p))
}

// pathError is fs.PathError without importing the os error wrapping
// semantics we do not need.
type pathError = fs.PathError

// ReadString reads a file and returns its content, "" on error.
func (f *rootFS) ReadString(p string) string {
	b, err := f.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

func (f *rootFS) ReadDir(p string) ([]fs.DirEntry, error) {
	f.seen(p)
	return os.ReadDir(f.real(p))
}

func (f *rootFS) Readlink(p string) (string, error) {
	f.seen(p)
	return os.Readlink(f.real(p))
}

func (f *rootFS) Stat(p string) (fs.FileInfo, error) {
	f.seen(p)
	return os.Stat(f.real(p))
}

func (f *rootFS) Lstat(p string) (fs.FileInfo, error) {
	f.seen(p)
	return os.Lstat(f.real(p))
}

func (f *rootFS) Open(p string) (*os.File, error) {
	f.seen(p)
	return os.Open(f.real(p))
}

// Lines reads a file and returns its lines without the newline; nil on
// error.
func (f *rootFS) Lines(p string) []string {
	b, err := f.ReadFile(p)
	if err != nil {
		return nil
	}
	return splitLines(b)
}

func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// keyValues parses "Key: value" lines (/proc/N/status, /proc/meminfo).
func keyValues(b []byte, sep byte) map[string]string {
	out := map[string]string{}
	for _, line := range splitLines(b) {
		i := strings.IndexByte(line, sep)
		if i < 0 {
			continue
		}
		out[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return out
}
