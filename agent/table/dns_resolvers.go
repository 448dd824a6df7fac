package table

import (
	"net/netip"
	"strings"
)

var dnsResolversTable = &tableDef{schema: dnsResolversSchema, gen: genDNSResolvers}

// dnsResolversSchema is specs/posix/dns_resolvers.table (Linux columns).
var dnsResolversSchema = Schema{
	Name:        "dns_resolvers",
	Description: "Resolvers used by this host. Note: On Windows this data is available in the interface_details table.",
	Columns: []Column{
		{Name: "id", Type: TypeInteger},
		{Name: "type", Type: TypeText},
		{Name: "address", Type: TypeText},
		{Name: "netmask", Type: TypeText},
		{Name: "options", Type: TypeBigint},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
	},
}

// resolver option bits of glibc's resolv.h (the options column).
const (
	resInit        = 0x00000001
	resDebug       = 0x00000002
	resUseVC       = 0x00000008
	resRecurse     = 0x00000040
	resDefNames    = 0x00000080
	resDNSRch      = 0x00000200
	resRotate      = 0x00004000
	resUseEDNS0    = 0x00100000
	resSnglKup     = 0x00200000
	resSnglKupReop = 0x00400000
	resNoTLDQuery  = 0x01000000
	resNoReload    = 0x02000000
	resTrustAD     = 0x04000000
	resNoAAAA      = 0x08000000
)

var resolvOptions = map[string]int64{
	"debug": resDebug, "use-vc": resUseVC, "rotate": resRotate, "edns0": resUseEDNS0,
	"single-request": resSnglKup, "single-request-reopen": resSnglKupReop,
	"no-tld-query": resNoTLDQuery, "no-reload": resNoReload, "trust-ad": resTrustAD, "no-aaaa": resNoAAAA,
}

// genDNSResolvers parses /etc/resolv.conf as res_init(3) would: up to 3
// nameservers, the last search/domain line (up to 6 domains), sortlist
// pairs, and the options bitmask on every row. Unlike osquery, each
// search row carries its own domain, and IPv6 nameservers get netmask 128.
func genDNSResolvers(q *queryCtx) ([]Row, error) {
	var ns, search, sortlist []string
	options := int64(resInit | resRecurse | resDefNames | resDNSRch)
	for _, line := range q.fs.Lines("/etc/resolv.conf") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0][0] == '#' || f[0][0] == ';' {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 && len(ns) < 3 {
				ns = append(ns, f[1])
			}
		case "search", "domain":
			search = nil
			for _, d := range f[1:] {
				if len(search) < 6 {
					search = append(search, d)
				}
			}
		case "sortlist":
			sortlist = append(sortlist, f[1:]...)
		case "options":
			for _, o := range f[1:] {
				if bit, ok := resolvOptions[o]; ok {
					options |= bit
				}
			}
		}
	}
	var rows []Row
	for i, a := range ns {
		mask := "32"
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() {
			mask = "128"
		}
		rows = append(rows, Row{"id": i, "type": "nameserver", "address": a, "netmask": mask, "options": options})
	}
	for i, s := range sortlist {
		addr, mask, _ := strings.Cut(s, "/")
		rows = append(rows, Row{"id": i, "type": "sortlist", "address": addr, "netmask": mask, "options": options})
	}
	for i, d := range search {
		rows = append(rows, Row{"id": i, "type": "search", "address": d, "options": options})
	}
	return rows, nil
}
