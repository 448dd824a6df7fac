package table

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
)

var processOpenSocketsTable = &tableDef{schema: processOpenSocketsSchema, gen: genProcessOpenSockets}

// processOpenSocketsSchema is specs/process_open_sockets.table (Linux columns).
var processOpenSocketsSchema = Schema{
	Name:        "process_open_sockets",
	Description: "Processes which have open network sockets on the system.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger},
		{Name: "fd", Type: TypeBigint},
		{Name: "socket", Type: TypeBigint},
		{Name: "family", Type: TypeInteger},
		{Name: "protocol", Type: TypeInteger},
		{Name: "local_address", Type: TypeText},
		{Name: "remote_address", Type: TypeText},
		{Name: "local_port", Type: TypeInteger},
		{Name: "remote_port", Type: TypeInteger},
		{Name: "path", Type: TypeText},
		{Name: "state", Type: TypeText},
		{Name: "net_namespace", Type: TypeText},
	},
}

// Address families and protocols as the kernel numbers them.
const (
	afUnix   = 1
	afInet   = 2
	afInet6  = 10
	afPacket = 17
)

// socketFiles are the /proc/<pid>/net tables read per network namespace.
var socketFiles = []struct {
	name     string
	family   int
	protocol int
}{
	{"tcp", afInet, 6}, {"tcp6", afInet6, 6},
	{"udp", afInet, 17}, {"udp6", afInet6, 17},
	{"udplite", afInet, 136}, {"udplite6", afInet6, 136},
	{"raw", afInet, 255}, {"raw6", afInet6, 255},
}

var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}

type socketInfo struct {
	inode                 string
	family, protocol      int
	local, remote         string
	localPort, remotePort int
	path, state           string
	netns                 string
}

type socketOwner struct{ pid, fd string }

// genProcessOpenSockets correlates the socket inodes found in
// /proc/<pid>/fd with the kernel's socket tables, read once per network
// namespace. Without a pid filter, sockets no process holds get pid -1.
func genProcessOpenSockets(q *queryCtx) ([]Row, error) {
	pids := q.Eq("pid")
	filter := len(pids) > 0
	for _, p := range pids {
		if p == "-1" {
			filter = false
		}
	}
	if !filter {
		pids = allPids(q.fs)
	}
	owners := map[string]socketOwner{}
	seenNS := map[string]bool{}
	var socks []socketInfo
	for _, pid := range pids {
		if err := q.Err(); err != nil {
			return nil, err
		}
		socketInodes(q.fs, pid, owners)
		ns := nsInode(q.fs, pid, "net")
		if seenNS[ns] {
			continue
		}
		seenNS[ns] = true
		socks = append(socks, readSocketTables(q.fs, "/proc/"+pid+"/net", ns)...)
	}
	// A pid whose namespace link cannot be read (ns "0") may show sockets
	// of a namespace also seen under its real inode: socket inodes are
	// unique, so keep one entry each, preferring a known namespace.
	best := map[string]int{}
	for i, s := range socks {
		k := strconv.Itoa(s.family) + "/" + s.inode
		if j, ok := best[k]; !ok || (socks[j].netns == "0" && s.netns != "0") {
			best[k] = i
		}
	}
	rows := make([]Row, 0, len(socks))
	for i, s := range socks {
		if best[strconv.Itoa(s.family)+"/"+s.inode] != i {
			continue
		}
		r := Row{}
		if o, ok := owners[s.inode]; ok {
			r["pid"], r["fd"] = o.pid, o.fd
		} else if !filter {
			r["pid"], r["fd"] = -1, -1
		} else {
			continue
		}
		r["socket"] = s.inode
		r["family"] = s.family
		r["protocol"] = s.protocol
		r["local_address"] = s.local
		r["remote_address"] = s.remote
		r["local_port"] = s.localPort
		r["remote_port"] = s.remotePort
		r["path"] = s.path
		r["state"] = s.state
		r["net_namespace"] = s.netns
		rows = append(rows, r)
	}
	return rows, nil
}

// socketInodes records pid and fd of every socket:[inode] link of pid.
func socketInodes(f *rootFS, pid string, into map[string]socketOwner) {
	dir := "/proc/" + pid + "/fd"
	ents, err := f.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		l, err := f.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			into[strings.TrimSuffix(in, "]")] = socketOwner{pid: pid, fd: e.Name()}
		}
	}
}

// nsInode is the inode of /proc/<pid>/ns/<kind> ("net:[4026531840]"), or
// "0" when it cannot be read.
func nsInode(f *rootFS, pid, kind string) string {
	l, err := f.Readlink("/proc/" + pid + "/ns/" + kind)
	if err != nil {
		return "0"
	}
	if i := strings.IndexByte(l, '['); i >= 0 {
		return strings.TrimSuffix(l[i+1:], "]")
	}
	return "0"
}

func readSocketTables(f *rootFS, dir, ns string) []socketInfo {
	var out []socketInfo
	for _, sf := range socketFiles {
		lines := f.Lines(dir + "/" + sf.name)
		for i, line := range lines {
			if i == 0 {
				continue // header
			}
			if s, ok := parseInetSocket(line, sf.family, sf.protocol); ok {
				s.netns = ns
				out = append(out, s)
			}
		}
	}
	for i, line := range f.Lines(dir + "/unix") {
		if i == 0 {
			continue
		}
		// Num RefCount Protocol Flags Type St Inode [Path]
		fl := strings.Fields(line)
		if len(fl) < 7 {
			continue
		}
		s := socketInfo{inode: fl[6], family: afUnix, netns: ns}
		if len(fl) > 7 {
			s.path = strings.Join(fl[7:], " ")
		}
		out = append(out, s)
	}
	for i, line := range f.Lines(dir + "/packet") {
		if i == 0 {
			continue
		}
		// sk RefCnt Type Proto Iface R Rmem User Inode
		fl := strings.Fields(line)
		if len(fl) < 9 {
			continue
		}
		proto, _ := strconv.ParseUint(fl[3], 16, 16)
		out = append(out, socketInfo{inode: fl[8], family: afPacket, protocol: int(proto), netns: ns})
	}
	return out
}

// parseInetSocket parses one line of /proc/net/{tcp,udp,raw}[6]:
// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode".
func parseInetSocket(line string, family, protocol int) (socketInfo, bool) {
	fl := strings.Fields(line)
	if len(fl) < 10 {
		return socketInfo{}, false
	}
	la, lp, ok1 := parseHexEndpoint(fl[1])
	ra, rp, ok2 := parseHexEndpoint(fl[2])
	if !ok1 || !ok2 {
		return socketInfo{}, false
	}
	s := socketInfo{
		inode: fl[9], family: family, protocol: protocol,
		local: la, localPort: lp, remote: ra, remotePort: rp,
	}
	if protocol == 6 {
		s.state = tcpStates[strings.ToUpper(fl[3])]
	}
	return s, true
}

// parseHexEndpoint decodes "0100007F:0016": the address is the kernel's
// in-memory bytes printed as host-order (little-endian) 32-bit words.
func parseHexEndpoint(s string) (string, int, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return "", 0, false
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return "", 0, false
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	var addr netip.Addr
	if len(b) == 4 {
		addr = netip.AddrFrom4([4]byte(b))
	} else {
		addr = netip.AddrFrom16([16]byte(b))
	}
	return addr.String(), int(port), true
}
