package table

import (
	"encoding/binary"
	"fmt"
	"path"
	"strconv"
	"strings"
	"syscall"
)

var interfaceDetailsTable = &tableDef{schema: interfaceDetailsSchema, gen: genInterfaceDetails}

// interfaceDetailsSchema is specs/interface_details.table (Linux columns).
var interfaceDetailsSchema = Schema{
	Name:        "interface_details",
	Description: "Detailed information and stats of network interfaces.",
	Columns: []Column{
		{Name: "interface", Type: TypeText},
		{Name: "mac", Type: TypeText, Collate: "nocase"},
		{Name: "type", Type: TypeInteger},
		{Name: "mtu", Type: TypeInteger},
		{Name: "metric", Type: TypeInteger},
		{Name: "flags", Type: TypeInteger},
		{Name: "ipackets", Type: TypeBigint},
		{Name: "opackets", Type: TypeBigint},
		{Name: "ibytes", Type: TypeBigint},
		{Name: "obytes", Type: TypeBigint},
		{Name: "ierrors", Type: TypeBigint},
		{Name: "oerrors", Type: TypeBigint},
		{Name: "idrops", Type: TypeBigint},
		{Name: "odrops", Type: TypeBigint},
		{Name: "collisions", Type: TypeBigint},
		{Name: "last_change", Type: TypeBigint},
		{Name: "link_speed", Type: TypeBigint},
		{Name: "pci_slot", Type: TypeText},
	},
}

// sysfsFlags are the interface flags osquery takes from
// /sys/class/net/<if>/flags rather than from netlink.
const sysfsFlags = syscall.IFF_UP | syscall.IFF_DEBUG | syscall.IFF_NOTRAILERS | syscall.IFF_NOARP |
	syscall.IFF_PROMISC | syscall.IFF_ALLMULTI | syscall.IFF_MULTICAST | syscall.IFF_PORTSEL |
	syscall.IFF_AUTOMEDIA | syscall.IFF_DYNAMIC

// genInterfaceDetails gives one row per link: netlink for flags, type, MTU
// and the 32-bit counters getifaddrs reports, sysfs for speed and bus.
func genInterfaceDetails(q *queryCtx) ([]Row, error) {
	links, err := netlinkDump(syscall.RTM_GETLINK)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, l := range links {
		typ, _, flags, ok := ifInfo(l.data)
		if !ok {
			continue
		}
		name := cString(l.attrs[syscall.IFLA_IFNAME])
		r := Row{
			"interface": name, "mac": macString(l.attrs[syscall.IFLA_ADDRESS]), "type": typ,
			"metric": 0, "mtu": 0, "last_change": -1, "link_speed": 0, "pci_slot": "-1",
		}
		if mtu, ok := nativeUint32(l.attrs[syscall.IFLA_MTU]); ok {
			r["mtu"] = mtu
		}
		// struct rtnl_link_stats: 23 u32 counters.
		if st := l.attrs[syscall.IFLA_STATS]; len(st) >= 4*10 {
			c := func(i int) uint32 { return binary.NativeEndian.Uint32(st[4*i:]) }
			r["ipackets"], r["opackets"] = c(0), c(1)
			r["ibytes"], r["obytes"] = c(2), c(3)
			r["ierrors"], r["oerrors"] = c(4), c(5)
			r["idrops"], r["odrops"] = c(6), c(7)
			r["collisions"] = c(9)
		}
		sys := "/sys/class/net/" + name
		if s := strings.TrimSpace(q.fs.ReadString(sys + "/flags")); strings.HasPrefix(s, "0x") {
			if v, err := strconv.ParseUint(s[2:], 16, 32); err == nil {
				flags = flags&^sysfsFlags | uint32(v)&sysfsFlags
			}
		}
		r["flags"] = flags
		if q.Used("link_speed") {
			if sp, err := strconv.ParseInt(strings.TrimSpace(q.fs.ReadString(sys+"/speed")), 10, 64); err == nil && sp > 0 {
				r["link_speed"] = sp
			}
		}
		if dev, err := q.fs.Readlink(sys + "/device"); err == nil {
			r["pci_slot"] = path.Base(dev)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func macString(b []byte) string {
	if len(b) == 0 {
		return "00:00:00:00:00:00"
	}
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}
