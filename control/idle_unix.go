//go:build unix

package control

import "syscall"

// readable is a syscall.RawConn.Read callback: true once the socket has
// bytes to read, is at end of file or failed; false (wait) while a read
// would block. It peeks: the bytes stay for the TLS connection.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
}
