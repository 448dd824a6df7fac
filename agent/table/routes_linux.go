package table

import (
	"syscall"
	"unsafe"
)

var routesTable = &tableDef{schema: routesSchema, gen: genRoutes}

// routesSchema is specs/routes.table (Linux columns).
var routesSchema = Schema{
	Name:        "routes",
	Description: "The active route table for the host system.",
	Columns: []Column{
		{Name: "destination", Type: TypeText},
		{Name: "netmask", Type: TypeInteger},
		{Name: "gateway", Type: TypeText},
		{Name: "source", Type: TypeText},
		{Name: "flags", Type: TypeInteger},
		{Name: "interface", Type: TypeText},
		{Name: "mtu", Type: TypeInteger},
		{Name: "metric", Type: TypeInteger},
		{Name: "type", Type: TypeText},
		{Name: "hopcount", Type: TypeInteger},
	},
}

// rtaxMTU and rtaxHoplimit index RTA_METRICS' nested attributes.
const (
	rtaxMTU      = 2
	rtaxHoplimit = 10
)

// genRoutes dumps every routing table over netlink, as osquery does. Like
// osquery, a route with an explicit host destination (/32, /128) reports
// netmask 0.
func genRoutes(q *queryCtx) ([]Row, error) {
	msgs, err := netlinkDump(syscall.RTM_GETROUTE)
	if err != nil {
		return nil, err
	}
	names := linkNames()
	var rows []Row
	for _, m := range msgs {
		if len(m.data) < syscall.SizeofRtMsg {
			continue
		}
		rt := (*syscall.RtMsg)(unsafe.Pointer(&m.data[0]))
		r := Row{"metric": 0, "hopcount": 0, "mtu": 0}
		mask := 0
		if oif, ok := nativeUint32(m.attrs[syscall.RTA_OIF]); ok {
			r["interface"] = names[int32(oif)]
		}
		if a, ok := addrFromBytes(m.attrs[syscall.RTA_GATEWAY]); ok {
			r["gateway"] = a.String()
		}
		if a, ok := addrFromBytes(m.attrs[syscall.RTA_PREFSRC]); ok {
			r["source"] = a.String()
		}
		if a, ok := addrFromBytes(m.attrs[syscall.RTA_DST]); ok {
			if rt.Dst_len != 32 && rt.Dst_len != 128 {
				mask = int(rt.Dst_len)
			}
			r["destination"] = a.String()
		} else {
			switch rt.Family {
			case syscall.AF_INET:
				r["destination"] = "0.0.0.0"
			case syscall.AF_INET6:
				r["destination"] = "::"
			}
			mask = int(rt.Dst_len)
		}
		if p, ok := nativeUint32(m.attrs[syscall.RTA_PRIORITY]); ok {
			r["metric"] = int32(p)
		}
		if mx := m.attrs[syscall.RTA_METRICS]; len(mx) > 0 {
			for len(mx) >= 4 {
				l := int(*(*uint16)(unsafe.Pointer(&mx[0])))
				t := *(*uint16)(unsafe.Pointer(&mx[2]))
				if l < 4 || l > len(mx) {
					break
				}
				if v, ok := nativeUint32(mx[4:l]); ok {
					switch t {
					case rtaxMTU:
						r["mtu"] = v
					case rtaxHoplimit:
						r["hopcount"] = v
					}
				}
				step := (l + 3) &^ 3
				if step > len(mx) {
					break
				}
				mx = mx[step:]
			}
		}
		switch rt.Type {
		case syscall.RTN_UNICAST:
			r["type"] = "gateway"
		case syscall.RTN_LOCAL:
			r["type"] = "local"
		case syscall.RTN_BROADCAST:
			r["type"] = "broadcast"
		case syscall.RTN_ANYCAST:
			r["type"] = "anycast"
		default:
			r["type"] = "other"
		}
		r["flags"] = rt.Flags
		r["netmask"] = mask
		rows = append(rows, r)
	}
	return rows, nil
}
