package event

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// nlSocket is a netlink socket with a receive timeout (so that readers
// notice shutdown) and a large receive buffer (so that bursts are not
// dropped). It implements libaudit.NetlinkSendReceiver, which lets the audit
// client use it instead of its own socket whose buffer cannot be sized.
type nlSocket struct {
	fd     int
	pid    uint32
	seq    atomic.Uint32
	buf    []byte
	closed atomic.Bool
}

var _ libaudit.NetlinkSendReceiver = (*nlSocket)(nil)

func newNLSocket(proto int, groups uint32, rcvbuf int, timeout time.Duration) (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if rcvbuf > 0 {
		// FORCE needs CAP_NET_ADMIN; fall back to the capped size.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if timeout > 0 {
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("netlink socket: set receive timeout: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink getsockname: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		unix.Close(fd)
		return nil, errors.New("netlink getsockname: not a netlink address")
	}
	return &nlSocket{fd: fd, pid: nl.Pid, buf: make([]byte, 1<<16)}, nil
}

// Send implements libaudit.NetlinkSender.
func (s *nlSocket) Send(msg syscall.NetlinkMessage) (uint32, error) {
	if msg.Header.Pid == 0 {
		msg.Header.Pid = s.pid
	}
	msg.Header.Seq = s.seq.Add(1)
	msg.Header.Len = uint32(syscall.SizeofNlMsghdr + len(msg.Data))
	b := make([]byte, msg.Header.Len)
	*(*syscall.NlMsghdr)(unsafe.Pointer(&b[0])) = msg.Header
	copy(b[syscall.SizeofNlMsghdr:], msg.Data)
	return msg.Header.Seq, unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// Receive implements libaudit.NetlinkReceiver. With the receive timeout a
// blocking read returns EAGAIN when nothing arrived.
func (s *nlSocket) Receive(nonBlocking bool, p libaudit.NetlinkParser) ([]syscall.NetlinkMessage, error) {
	n, err := s.recv(nonBlocking)
	if err != nil {
		return nil, err
	}
	return p(s.buf[:n])
}

// recv reads one datagram into s.buf, rejecting anything not sent by the
// kernel (port id 0).
func (s *nlSocket) recv(nonBlocking bool) (int, error) {
	flags := 0
	if nonBlocking {
		flags = unix.MSG_DONTWAIT
	}
	for {
		n, from, err := unix.Recvfrom(s.fd, s.buf, flags)
		if err != nil {
			return 0, err
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue
		}
		if n < syscall.NLMSG_HDRLEN {
			return 0, fmt.Errorf("netlink: short message of %d bytes", n)
		}
		return n, nil
	}
}

// Close implements io.Closer; it is idempotent.
func (s *nlSocket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return unix.Close(s.fd)
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
