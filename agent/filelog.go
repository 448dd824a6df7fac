package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// osquery's defaults for --logger_rotate_size and --logger_rotate_max_files.
const (
	DefaultLoggerRotateSize     = 25 << 20
	DefaultLoggerRotateMaxFiles = 25
)

// rotateLog moves path aside when it has reached size bytes: path.1 is the
// newest rotated file, and files beyond path.maxFiles are deleted. The
// check runs before each batch is appended, so a file may pass size by
// one batch (at most the logger's batch bytes), as osquery's may.
func rotateLog(path string, size int64, maxFiles int) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	if st.Size() < size {
		return nil
	}
	name := func(i int) string { return path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(maxFiles)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	for i := maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotating %s: %w", path, err)
		}
	}
	if err := os.Rename(path, name(1)); err != nil {
		return fmt.Errorf("rotating %s: %w", path, err)
	}
	return nil
}
