package table

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	sqlite "modernc.org/sqlite"
)

// osquery's SQL functions (sqlite_string, sqlite_hashing, sqlite_encoding,
// sqlite_network), so that query packs written for osquery run unchanged.
// Regular expressions are Go's RE2, not ECMAScript: no backreferences or
// lookaround; patterns longer than 256 bytes are refused, as in osquery.

const regexMaxSize = 256

type sqlFunc struct {
	name  string
	nArgs int32 // -1: variadic, checked by the function
	fn    func(args []driver.Value) (driver.Value, error)
}

var sqlFunctions = []sqlFunc{
	{"split", 3, func(a []driver.Value) (driver.Value, error) { return splitFunc(a, tokenSplit) }},
	{"regex_split", 3, func(a []driver.Value) (driver.Value, error) { return splitFunc(a, regexSplit) }},
	{"regex_match", 3, regexMatchFunc},
	{"inet_aton", 1, inetAtonFunc},
	{"concat", -1, func(a []driver.Value) (driver.Value, error) { return concatFunc("", a), nil }},
	{"concat_ws", -1, concatWSFunc},
	{"md5", 1, hashFunc(func(b []byte) []byte { h := md5.Sum(b); return h[:] })},
	{"sha1", 1, hashFunc(func(b []byte) []byte { h := sha1.Sum(b); return h[:] })},
	{"sha256", 1, hashFunc(func(b []byte) []byte { h := sha256.Sum256(b); return h[:] })},
	{"to_base64", 1, b64Func(false)},
	{"conditional_to_base64", 1, b64Func(true)},
	{"from_base64", 1, fromBase64Func},
	{"in_cidr_block", 2, inCIDRBlockFunc},
	{"community_id_v1", -1, communityIDFunc(false)},
	{"community_id_v1_strict", -1, communityIDFunc(true)},
	{"version_compare", -1, versionCompareFunc},
}

func registerFunctions(d *sqlite.Driver) error {
	for _, f := range sqlFunctions {
		fn := f.fn
		err := d.RegisterDeterministicScalarFunction(f.name, f.nArgs, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			return fn(args)
		})
		if err != nil {
			return fmt.Errorf("registering SQL function %s: %w", f.name, err)
		}
	}
	return nil
}

// text renders a SQL value as sqlite3_value_text would.
func text(v driver.Value) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', 15, 64)
	}
	return ""
}

func anyNull(args []driver.Value) bool {
	for _, a := range args {
		if a == nil {
			return true
		}
	}
	return false
}

func intArg(v driver.Value) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(text(v)), 10, 64)
	return n
}

// tokenSplit splits at any of the token characters, trims the parts and
// drops empty ones (osquery::split).
func tokenSplit(s, tokens string) ([]string, error) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(tokens, r) })
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

func regexSplit(s, pattern string) ([]string, error) {
	if len(pattern) > regexMaxSize {
		return nil, errors.New("Invalid regex")
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, errors.New("Invalid regex")
	}
	return re.Split(s, -1), nil
}

func splitFunc(args []driver.Value, split func(s, tok string) ([]string, error)) (driver.Value, error) {
	if anyNull(args) {
		return nil, nil
	}
	tok := text(args[1])
	if tok == "" {
		return nil, errors.New("Invalid input to split function")
	}
	parts, err := split(text(args[0]), tok)
	if err != nil {
		return nil, err
	}
	i := intArg(args[2])
	if i < 0 || i >= int64(len(parts)) {
		return nil, nil
	}
	return parts[i], nil
}

// regexMatchFunc returns capture group index of the first match, or NULL.
func regexMatchFunc(args []driver.Value) (driver.Value, error) {
	if anyNull(args) {
		return nil, nil
	}
	pattern := text(args[1])
	if len(pattern) > regexMaxSize {
		return nil, fmt.Errorf("Invalid regex: too big, max size is %d bytes", regexMaxSize)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, errors.New("Invalid regex")
	}
	m := re.FindStringSubmatch(text(args[0]))
	i := intArg(args[2])
	if m == nil || i < 0 || i >= int64(len(m)) {
		return nil, nil
	}
	return m[i], nil
}

func inetAtonFunc(args []driver.Value) (driver.Value, error) {
	if args[0] == nil {
		return nil, nil
	}
	a, err := netip.ParseAddr(text(args[0]))
	if err != nil || !a.Is4() {
		return nil, nil
	}
	b := a.As4()
	return int64(binary.BigEndian.Uint32(b[:])), nil
}

func concatFunc(sep string, args []driver.Value) driver.Value {
	if len(args) == 0 {
		return nil
	}
	var b strings.Builder
	for i, a := range args {
		if a == nil {
			continue
		}
		b.WriteString(text(a))
		if sep != "" && i+1 < len(args) {
			b.WriteString(sep)
		}
	}
	return b.String()
}

func concatWSFunc(args []driver.Value) (driver.Value, error) {
	if len(args) == 0 {
		return nil, errors.New("Missing separator to concat_ws")
	}
	sep := ""
	if args[0] != nil {
		sep = text(args[0])
	}
	return concatFunc(sep, args[1:]), nil
}

func hashFunc(sum func([]byte) []byte) func([]driver.Value) (driver.Value, error) {
	return func(args []driver.Value) (driver.Value, error) {
		if args[0] == nil {
			return nil, nil
		}
		s := text(args[0])
		// osquery hashes the C string: up to the first NUL.
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return hex.EncodeToString(sum([]byte(s))), nil
	}
}

func b64Func(conditional bool) func([]driver.Value) (driver.Value, error) {
	return func(args []driver.Value) (driver.Value, error) {
		if args[0] == nil {
			return nil, nil
		}
		s := text(args[0])
		if conditional && isPrintable(s) {
			return s, nil
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	}
}

// isPrintable is osquery's test: every byte a printable ASCII character
// or whitespace.
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || (!unicode.IsPrint(rune(c)) && !unicode.IsSpace(rune(c))) {
			return false
		}
	}
	return true
}

func fromBase64Func(args []driver.Value) (driver.Value, error) {
	if args[0] == nil {
		return nil, nil
	}
	s := strings.TrimRight(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, text(args[0])), "=")
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", nil // osquery yields an empty string for bad input
	}
	return string(b), nil
}

// inCIDRBlockFunc reports whether an address is one of the network's
// hosts; like boost's network_v4::hosts(), an IPv4 network's own and
// broadcast addresses are not hosts below /31.
func inCIDRBlockFunc(args []driver.Value) (driver.Value, error) {
	cidr, ok1 := args[0].(string)
	ip, ok2 := args[1].(string)
	if !ok1 {
		return nil, errors.New("CIDR must be a string")
	}
	if !ok2 {
		return nil, errors.New("IP address must be a string")
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, errors.New("IP address cannot be parsed")
	}
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || pfx.Addr().Is4() != addr.Is4() {
		if addr.Is4() {
			return nil, errors.New("CIDR for IP address v4 cannot be parsed")
		}
		return nil, errors.New("CIDR for IP address v6 cannot be parsed")
	}
	pfx = pfx.Masked()
	if !pfx.Contains(addr) {
		return int64(0), nil
	}
	if addr.Is4() && pfx.Bits() < 31 {
		a := addr.As4()
		n := binary.BigEndian.Uint32(a[:])
		host := uint32(1)<<(32-pfx.Bits()) - 1
		if n&host == 0 || n&host == host {
			return int64(0), nil
		}
	}
	return int64(1), nil
}

// communityIDFunc computes a Community ID v1 flow hash
// (saddr, daddr, sport, dport, proto[, seed]); the lenient form returns NULL
// where the strict one fails.
func communityIDFunc(strict bool) func([]driver.Value) (driver.Value, error) {
	return func(args []driver.Value) (driver.Value, error) {
		v, err := communityID(args)
		if err != nil {
			if strict {
				return nil, err
			}
			return nil, nil
		}
		return v, nil
	}
}

func communityID(args []driver.Value) (string, error) {
	if len(args) != 5 && len(args) != 6 {
		return "", fmt.Errorf("community_id_v1 takes 5 or 6 arguments, not %d", len(args))
	}
	var seed int64
	if len(args) == 6 {
		s, ok := args[5].(int64)
		if !ok {
			return "", errors.New("Community ID seed must be an integer")
		}
		if s < -32768 || s > 32767 {
			return "", errors.New("Community ID seed must fit in 2 bytes")
		}
		seed = s
	}
	ss, ok1 := args[0].(string)
	ds, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return "", errors.New("Community ID IPs must be strings")
	}
	sa, err := netip.ParseAddr(ss)
	if err != nil {
		return "", errors.New("Community ID saddr cannot be parsed as IP")
	}
	da, err := netip.ParseAddr(ds)
	if err != nil {
		return "", errors.New("Community ID daddr cannot be parsed as IP")
	}
	sp, ok1 := args[2].(int64)
	dp, ok2 := args[3].(int64)
	if !ok1 || !ok2 {
		return "", errors.New("Community ID ports must be integers")
	}
	if sp < 0 || sp > 65535 || dp < 0 || dp > 65535 {
		return "", errors.New("Community ID ports must fit in 2 bytes")
	}
	proto, ok := args[4].(int64)
	if !ok {
		return "", errors.New("Community ID protocol must be an integer")
	}
	if proto < 0 || proto > 255 {
		return "", errors.New("Community ID protocol must fit in 1 byte")
	}
	if !(sa.Less(da) || (sa == da && sp < dp)) {
		sa, da, sp, dp = da, sa, dp, sp
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(seed))
	b = append(b, sa.AsSlice()...)
	b = append(b, da.AsSlice()...)
	b = append(b, byte(proto), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(sp))
	b = binary.BigEndian.AppendUint16(b, uint16(dp))
	h := sha1.Sum(b)
	return "1:" + base64.StdEncoding.EncodeToString(h[:]), nil
}
