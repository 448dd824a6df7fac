package table

import (
	"errors"
	"syscall"
)

// readFile reads a whole file with plain syscalls: /proc files report size
// 0, and os.ReadFile's fstat and netpoller registration cost more than the
// read itself when a scan opens thousands of them. O_NONBLOCK keeps a FIFO
// planted where a file was expected from hanging the query.
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	for errors.Is(err, syscall.EINTR) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, &pathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return nil, &pathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		// Read until 0: a short read is not the end of a seq_file, which
		// stops early when its next record does not fit.
		buf = buf[:len(buf)+n]
	}
}
