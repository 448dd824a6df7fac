package event

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// field is one key=value of an audit record as the kernel wrote it.
type field struct {
	value  string
	quoted bool // value was in double quotes: a literal string
}

// parseFields splits the body of an audit record ("key=value key2="v" ...",
// after the "audit(...): " header) into its fields. Values in double quotes
// are literal; values in single quotes (the msg='...' of user-space
// records) are parsed recursively and their fields merged; other values are
// kept raw (numbers, or hex when the kernel encoded an untrusted string).
func parseFields(s string) map[string]field {
	out := make(map[string]field, 16)
	parseFieldsInto(s, out)
	return out
}

func parseFieldsInto(s string, out map[string]field) {
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return
		}
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexByte(s, ' ')
		if eq < 0 || (sp >= 0 && sp < eq) {
			// A bare word (some records have them): skip it.
			if sp < 0 {
				return
			}
			s = s[sp:]
			continue
		}
		key := s[:eq]
		s = s[eq+1:]
		switch {
		case strings.HasPrefix(s, `"`):
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				out[key] = field{value: s[1:], quoted: true}
				return
			}
			out[key] = field{value: s[1 : 1+end], quoted: true}
			s = s[end+2:]
		case strings.HasPrefix(s, `'`):
			end := strings.IndexByte(s[1:], '\'')
			inner := s[1:]
			if end >= 0 {
				inner = s[1 : 1+end]
				s = s[end+2:]
			} else {
				s = ""
			}
			if key == "msg" {
				parseFieldsInto(inner, out)
			} else {
				out[key] = field{value: inner, quoted: true}
			}
		default:
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			out[key] = field{value: s[:end]}
			s = s[end:]
		}
	}
}

// str decodes an untrusted string field: quoted values are literal,
// unquoted even-length uppercase hex is decoded, anything else ("(null)",
// "?") is returned as is.
func (f field) str() string {
	if f.quoted {
		return f.value
	}
	if isUpperHex(f.value) {
		b, err := hex.DecodeString(f.value)
		if err == nil {
			return string(b)
		}
	}
	return f.value
}

func isUpperHex(s string) bool {
	if s == "" || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// recordBody returns what follows the "audit(TIME:SEQ): " header.
func recordBody(raw string) string {
	if i := strings.Index(raw, "): "); i >= 0 && strings.HasPrefix(raw, "audit(") {
		return raw[i+3:]
	}
	return raw
}

// errArgv reports an EXECVE record set that does not hold the whole argv.
var errArgv = errors.New("incomplete execve arguments")

// execveArgv reassembles argv from the bodies of an event's EXECVE records.
// The kernel splits a long argv over several records and a long argument
// into chunks (aN_len=total aN[0]=... aN[1]=...), each chunk quoted or hex
// encoded on its own. It returns the arguments it could rebuild and
// errArgv when some are missing. (go-libaudit's aucoalesce keeps only the
// last EXECVE record, ignores chunks and fails on empty arguments, so the
// records are parsed here; its Reassembler still groups them.)
func execveArgv(bodies []string) ([]string, error) {
	argc := -1
	whole := map[int]string{}
	chunks := map[int]map[int]string{}
	lens := map[int]int{}
	for _, body := range bodies {
		for k, f := range parseFields(body) {
			switch {
			case k == "argc":
				n, err := strconv.Atoi(f.value)
				if err != nil || n < 0 || n > 1<<20 {
					return nil, fmt.Errorf("execve record: bad argc %q", f.value)
				}
				argc = n
			case len(k) > 1 && k[0] == 'a':
				rest := k[1:]
				if i := strings.IndexByte(rest, '['); i > 0 && strings.HasSuffix(rest, "]") {
					n, err1 := strconv.Atoi(rest[:i])
					c, err2 := strconv.Atoi(rest[i+1 : len(rest)-1])
					if err1 != nil || err2 != nil || n < 0 || c < 0 {
						continue
					}
					if chunks[n] == nil {
						chunks[n] = map[int]string{}
					}
					chunks[n][c] = f.str()
				} else if n, ok := strings.CutSuffix(rest, "_len"); ok {
					i, err1 := strconv.Atoi(n)
					l, err2 := strconv.Atoi(f.value)
					if err1 == nil && err2 == nil {
						lens[i] = l
					}
				} else if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
					whole[n] = f.str()
				}
			}
		}
	}
	if argc < 0 {
		return nil, fmt.Errorf("execve record: no argc: %w", errArgv)
	}
	argv := make([]string, 0, argc)
	var missing error
	for i := 0; i < argc; i++ {
		if v, ok := whole[i]; ok {
			argv = append(argv, v)
			continue
		}
		cs, ok := chunks[i]
		if !ok {
			missing = fmt.Errorf("execve record: argument a%d absent: %w", i, errArgv)
			argv = append(argv, "")
			continue
		}
		var sb strings.Builder
		for c := 0; c < len(cs); c++ {
			part, ok := cs[c]
			if !ok {
				missing = fmt.Errorf("execve record: chunk a%d[%d] absent: %w", i, c, errArgv)
				break
			}
			sb.WriteString(part)
		}
		// aN_len counts the argument as logged: raw, or twice that when hex.
		if l, ok := lens[i]; ok && sb.Len() != l && 2*sb.Len() != l && missing == nil {
			missing = fmt.Errorf("execve record: a%d has %d of %d bytes: %w", i, sb.Len(), l, errArgv)
		}
		argv = append(argv, sb.String())
	}
	return argv, missing
}

type sockaddr struct {
	family int
	addr   string
	port   int
}

// parseSockaddr decodes the hex saddr of a SOCKADDR record (a struct
// sockaddr as the process passed it: family in host order, port in
// network order).
func parseSockaddr(h string) (sockaddr, bool) {
	b, ok := decodeHex(h)
	if !ok || len(b) < 2 {
		return sockaddr{}, false
	}
	s := sockaddr{family: int(b[0]) | int(b[1])<<8}
	switch s.family {
	case 2:
		if len(b) < 8 {
			return s, false
		}
		s.port = int(b[2])<<8 | int(b[3])
		s.addr = strconv.Itoa(int(b[4])) + "." + strconv.Itoa(int(b[5])) + "." + strconv.Itoa(int(b[6])) + "." + strconv.Itoa(int(b[7]))
	case 10:
		if len(b) < 24 {
			return s, false
		}
		s.port = int(b[2])<<8 | int(b[3])
		s.addr = ipv6String(b[8:24])
	case 1:
		p := b[2:]
		if i := strings.IndexByte(string(p), 0); i >= 0 {
			p = p[:i]
		}
		s.addr = string(p)
	}
	return s, true
}

func decodeHex(h string) ([]byte, bool) {
	if len(h)%2 != 0 {
		return nil, false
	}
	out := make([]byte, len(h)/2)
	for i := 0; i < len(out); i++ {
		hi, ok1 := hexVal(h[2*i])
		lo, ok2 := hexVal(h[2*i+1])
		if !ok1 || !ok2 {
			return nil, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func ipv6String(b []byte) string { return netip.AddrFrom16([16]byte(b)).String() }
