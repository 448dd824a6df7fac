package table

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"
)

// Route netlink dumps (the same kernel answers getifaddrs(3) and osquery's
// routes table read), through the standard library's syscall package so
// the agent stays CGO_ENABLED=0.

type netlinkMsg struct {
	typ   uint16
	data  []byte // the family header (ifinfomsg, ifaddrmsg, rtmsg)
	attrs map[uint16][]byte
}

// netlinkDump asks the kernel for every object of kind (RTM_GETLINK,
// RTM_GETADDR, RTM_GETROUTE) and returns the messages with their
// attributes.
func netlinkDump(kind int) ([]netlinkMsg, error) {
	rib, err := syscall.NetlinkRIB(kind, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink dump %d: %w", kind, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parsing netlink dump %d: %w", kind, err)
	}
	var out []netlinkMsg
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type == syscall.NLMSG_DONE || m.Header.Type == syscall.NLMSG_ERROR {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		nm := netlinkMsg{typ: m.Header.Type, data: m.Data, attrs: map[uint16][]byte{}}
		for _, a := range attrs {
			nm.attrs[a.Attr.Type] = a.Value
		}
		out = append(out, nm)
	}
	return out, nil
}

// ifInfo decodes struct ifinfomsg.
func ifInfo(b []byte) (typ uint16, index int32, flags uint32, ok bool) {
	if len(b) < syscall.SizeofIfInfomsg {
		return 0, 0, 0, false
	}
	m := (*syscall.IfInfomsg)(unsafe.Pointer(&b[0]))
	return m.Type, m.Index, m.Flags, true
}

// nativeUint32 reads a host-order u32 attribute.
func nativeUint32(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(b), true
}

func addrFromBytes(b []byte) (netip.Addr, bool) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), true
	case 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

// linkNames maps interface indexes to names.
func linkNames() map[int32]string {
	out := map[int32]string{}
	links, err := netlinkDump(syscall.RTM_GETLINK)
	if err != nil {
		return out
	}
	for _, l := range links {
		if _, idx, _, ok := ifInfo(l.data); ok {
			out[idx] = cString(l.attrs[syscall.IFLA_IFNAME])
		}
	}
	return out
}
