package event

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// fakeAuditCtl is an audit control socket that records what is sent and
// answers AUDIT_GET with status (or not at all when status is nil, as a
// socket whose read timed out) and acknowledges every other request.
type fakeAuditCtl struct {
	mu      sync.Mutex
	status  *libaudit.AuditStatus
	sendErr error
	seq     uint32
	sent    []syscall.NetlinkMessage
	replies []syscall.NetlinkMessage
	closed  bool
}

var _ libaudit.NetlinkSendReceiver = (*fakeAuditCtl)(nil)

func (f *fakeAuditCtl) Send(msg syscall.NetlinkMessage) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	msg.Header.Seq = f.seq
	f.sent = append(f.sent, msg) // recorded even when sending fails
	if f.sendErr != nil {
		return 0, f.sendErr
	}
	ack := syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: syscall.NLMSG_ERROR, Seq: f.seq}, Data: make([]byte, 4)}
	switch {
	case msg.Header.Type == libaudit.AuditGet && f.status == nil:
		// No answer: the receive times out.
	case msg.Header.Type == libaudit.AuditGet:
		var b bytes.Buffer
		_ = binary.Write(&b, binary.NativeEndian, f.status)
		f.replies = append(f.replies, ack, syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: libaudit.AuditGet, Seq: f.seq}, Data: b.Bytes()})
	default:
		f.replies = append(f.replies, ack)
	}
	return f.seq, nil
}

func (f *fakeAuditCtl) Receive(bool, libaudit.NetlinkParser) ([]syscall.NetlinkMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.replies) == 0 {
		return nil, unix.EAGAIN // what SO_RCVTIMEO gives when nothing came
	}
	m := f.replies[0]
	f.replies = f.replies[1:]
	return []syscall.NetlinkMessage{m}, nil
}

func (f *fakeAuditCtl) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// sets returns the AUDIT_SET requests sent, decoded.
func (f *fakeAuditCtl) sets(t *testing.T) []libaudit.AuditStatus {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []libaudit.AuditStatus
	for _, m := range f.sent {
		if m.Header.Type != libaudit.AuditSet {
			continue
		}
		var st libaudit.AuditStatus
		if err := st.FromWireFormat(m.Data); err != nil {
			t.Fatalf("decode AUDIT_SET: %v", err)
		}
		out = append(out, st)
	}
	return out
}

// TestAuditFailedStatusChangesNothing: when the audit status cannot be read
// (the read timed out while auditd was busy, or the request could not be
// sent), the failed start must not change audit: no AUDIT_SET at all, in
// particular not enabled=0, which would switch audit off under auditd.
func TestAuditFailedStatusChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctl  *fakeAuditCtl
	}{
		{"read timed out", &fakeAuditCtl{}},
		{"send failed", &fakeAuditCtl{sendErr: unix.ENOBUFS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := startAuditOn(context.Background(), discard(), NewBuffer(BufferOptions{}),
				map[string]bool{"process_events": true}, dir, 8, tc.ctl)
			if err == nil {
				a.Close()
				t.Fatal("start succeeded without an audit status")
			}
			if !strings.Contains(err.Error(), "get audit status") {
				t.Errorf("error %q does not say the status read failed", err)
			}
			if sets := tc.ctl.sets(t); len(sets) != 0 {
				t.Errorf("a failed status read sent %d AUDIT_SET requests: %+v", len(sets), sets)
			}
			if !tc.ctl.closed {
				t.Error("control socket not closed")
			}
			if _, err := os.Stat(dir + "/audit_state.json"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file written without a status: %v", err)
			}
		})
	}
}

// TestAuditRestoreAfterKnownStatus is the other side: once the status was
// read, a start that fails later puts back what it found. Audit found off
// (enabled=0) with a live receiver (this process) fails the start and sends
// enabled=0 again; found on, it sends nothing that disables audit.
func TestAuditRestoreAfterKnownStatus(t *testing.T) {
	for _, enabled := range []uint32{0, 1} {
		ctl := &fakeAuditCtl{status: &libaudit.AuditStatus{Enabled: enabled, PID: uint32(os.Getpid()), BacklogLimit: auditBacklog}}
		a, err := startAuditOn(context.Background(), discard(), NewBuffer(BufferOptions{}),
			map[string]bool{"process_events": true}, "", 8, ctl)
		if err == nil {
			a.Close()
			t.Fatalf("enabled=%d: start succeeded although pid %d holds audit", enabled, os.Getpid())
		}
		if !strings.Contains(err.Error(), "already delivered") {
			t.Errorf("enabled=%d: error %q", enabled, err)
		}
		sets := ctl.sets(t)
		var disables int
		for _, s := range sets {
			if s.Mask&libaudit.AuditStatusEnabled != 0 && s.Enabled == 0 {
				disables++
			}
		}
		if want := map[uint32]int{0: 1, 1: 0}[enabled]; disables != want || len(sets) != want {
			t.Errorf("found enabled=%d: %d AUDIT_SET (%d with enabled=0), want %d: %+v", enabled, len(sets), disables, want, sets)
		}
	}
}
