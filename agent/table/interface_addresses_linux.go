package table

import (
	"net/netip"
	"syscall"
	"unsafe"
)

var interfaceAddressesTable = &tableDef{schema: interfaceAddressesSchema, gen: genInterfaceAddresses}

// interfaceAddressesSchema is specs/interface_addresses.table (Linux columns).
var interfaceAddressesSchema = Schema{
	Name:        "interface_addresses",
	Description: "Network interfaces and relevant metadata.",
	Columns: []Column{
		{Name: "interface", Type: TypeText},
		{Name: "address", Type: TypeText},
		{Name: "mask", Type: TypeText},
		{Name: "broadcast", Type: TypeText},
		{Name: "point_to_point", Type: TypeText},
		{Name: "type", Type: TypeText},
	},
}

// genInterfaceAddresses gives every IPv4 and IPv6 address, decoded from an
// RTM_GETADDR dump the way getifaddrs(3) presents it.
func genInterfaceAddresses(q *queryCtx) ([]Row, error) {
	msgs, err := netlinkDump(syscall.RTM_GETADDR)
	if err != nil {
		return nil, err
	}
	names := linkNames()
	ifFlags := map[int32]uint32{}
	if links, err := netlinkDump(syscall.RTM_GETLINK); err == nil {
		for _, l := range links {
			if _, idx, fl, ok := ifInfo(l.data); ok {
				ifFlags[idx] = fl
			}
		}
	}
	var rows []Row
	for _, m := range msgs {
		if len(m.data) < syscall.SizeofIfAddrmsg {
			continue
		}
		am := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.data[0]))
		if am.Family != syscall.AF_INET && am.Family != syscall.AF_INET6 {
			continue
		}
		local, hasLocal := addrFromBytes(m.attrs[syscall.IFA_LOCAL])
		peer, hasPeer := addrFromBytes(m.attrs[syscall.IFA_ADDRESS])
		addr := peer
		if hasLocal {
			addr = local
		}
		if !addr.IsValid() {
			continue
		}
		name := names[int32(am.Index)]
		if am.Family == syscall.AF_INET {
			if l := cString(m.attrs[syscall.IFA_LABEL]); l != "" {
				name = l
			}
		}
		r := Row{"interface": name, "address": addr.String(), "mask": prefixMask(am.Family, int(am.Prefixlen)), "type": "unknown"}
		var dst netip.Addr
		if b, ok := addrFromBytes(m.attrs[syscall.IFA_BROADCAST]); ok {
			dst = b
		} else if hasLocal && hasPeer && local != peer {
			dst = peer
		}
		if dst.IsValid() {
			if ifFlags[int32(am.Index)]&syscall.IFF_BROADCAST != 0 {
				r["broadcast"] = dst.String()
			} else {
				r["point_to_point"] = dst.String()
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// prefixMask renders a prefix length as an address mask
// ("255.255.255.0", "ffff:ffff:ffff:ffff::").
func prefixMask(family uint8, bits int) string {
	n := 4
	if family == syscall.AF_INET6 {
		n = 16
	}
	b := make([]byte, n)
	for i := 0; i < n && bits > 0; i++ {
		if bits >= 8 {
			b[i] = 0xff
			bits -= 8
		} else {
			b[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	a, _ := addrFromBytes(b)
	return a.String()
}
