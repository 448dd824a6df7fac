package table

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseProcStat: whatever the command name (spaces, parentheses), the
// fields after it are found.
func FuzzParseProcStat(f *testing.F) {
	f.Add("sleep", int64(42))
	f.Add("bash (dev) )(", int64(-5))
	f.Add(") S 1 2 3", int64(0))
	f.Fuzz(func(t *testing.T, comm string, nice int64) {
		if strings.ContainsAny(comm, "\n\x00") {
			return
		}
		line := "77 (" + comm + ") S 1 77 77 0 -1 0 0 0 0 0 12 34 0 0 20 " + strconv.FormatInt(nice, 10) + " 3 0 999 4096 10"
		st, ok := parseProcStat(line)
		if !ok {
			t.Fatalf("parseProcStat(%q) failed", line)
		}
		if st.comm != comm || st.state != "S" || st.ppid != "1" || st.utime != "12" || st.stime != "34" ||
			st.nice != strconv.FormatInt(nice, 10) || st.threads != "3" || st.startTicks != "999" || st.rss != "10" {
			t.Fatalf("parseProcStat(%q) = %+v", line, st)
		}
	})
}

// FuzzParseHexEndpoint: an address and port printed the way the kernel
// prints /proc/net/tcp[6] decode back to themselves.
func FuzzParseHexEndpoint(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(22))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5}, uint16(443))
	f.Fuzz(func(t *testing.T, ip []byte, port uint16) {
		if len(ip) != 4 && len(ip) != 16 {
			if _, _, ok := parseHexEndpoint(hex.EncodeToString(ip) + ":0016"); ok {
				t.Fatalf("accepted a %d-byte address", len(ip))
			}
			return
		}
		// The kernel prints each 32-bit word in host (little-endian) order.
		words := make([]byte, len(ip))
		for i := 0; i < len(ip); i += 4 {
			words[i], words[i+1], words[i+2], words[i+3] = ip[i+3], ip[i+2], ip[i+1], ip[i]
		}
		s := strings.ToUpper(hex.EncodeToString(words)) + ":" + strings.ToUpper(strconv.FormatUint(uint64(port), 16))
		addr, p, ok := parseHexEndpoint(s)
		want, _ := netip.AddrFromSlice(ip)
		if !ok || addr != want.String() || p != int(port) {
			t.Fatalf("parseHexEndpoint(%q) = %q, %d, %v; want %s, %d", s, addr, p, ok, want, port)
		}
	})
}

// FuzzLineParsers feeds arbitrary text to the line-oriented parsers: none
// may panic, and what they return keeps their documented shape.
func FuzzLineParsers(f *testing.F) {
	for _, s := range []string{
		"Name:\tx\nUid:\t1\t2\t3\t4\nVmRSS:\t 5 kB\n",
		"55d0c6a00000-55d0c6a02000 r--p 00000000 fd:01 1048602   /usr/bin/sleep",
		"*/5 * * * * root /usr/bin/check", "@reboot x",
		"from=\"a\" ssh-rsa AAAA c", "#1700000000\nls\n: 1:0;x\n",
		"/mnt/my\\040disk", "0::/user.slice\n", "Package: a\nStatus: b\n\nPackage: c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseStatus([]byte(s))
		if r := parseMapsLine(s); r != nil {
			if !strings.HasPrefix(r["start"].(string), "0x") || !strings.HasPrefix(r["end"].(string), "0x") {
				t.Fatalf("parseMapsLine(%q) = %v", s, r)
			}
		}
		if r := cronLine(s); r != nil && r["command"] == "" {
			t.Fatalf("cronLine(%q) gave a row without a command", s)
		}
		if r := authorizedKeyLine(s); r != nil {
			if r["key"] == "" || !contains(sshKeyTypes, r["algorithm"].(string)) {
				t.Fatalf("authorizedKeyLine(%q) = %v", s, r)
			}
		}
		for _, r := range parseHistory(s, "0", "/h") {
			if _, ok := r["command"].(string); !ok {
				t.Fatalf("parseHistory(%q) row without command: %v", s, r)
			}
		}
		if u := unescapeMount(s); len(u) > len(s) {
			t.Fatalf("unescapeMount(%q) grew to %q", s, u)
		}
		parseCgroup(s)
		parseStanzas(s)
		parseUtmp([]byte(s))
		keyValues([]byte(s), ':')
	})
}
