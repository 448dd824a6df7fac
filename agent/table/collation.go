package table

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	sqlite "modernc.org/sqlite"
)

// osquery's version collations and version_compare(). Versions compare
// segment by segment, segments ending at one of ~ - ^ . : . Within a
// segment the first differing byte decides, unless one segment ends first:
// the shorter segment is the smaller, which orders digit runs numerically.
// The package flavours add: an epoch ("1:2.0") sorts above none; delimiter
// precedence (~ < - < ^ < . <:); rules for what is left after the common
// part (a tilde sorts below nothing, a caret above, a hyphen equal).

type versionRules struct {
	epoch      bool // an epoch outranks everything
	delimOrder bool // delimiters compare by precedence
	remaining  bool // the remainder after the common part decides
	remPrec    bool // ...and a digit just before it defers to length
}

var versionCollations = map[string]versionRules{
	"version":      {},
	"version_arch": {epoch: true, remaining: true, remPrec: true},
	"version_dpkg": {epoch: true, delimOrder: true},
	"version_rhel": {epoch: true, delimOrder: true, remaining: true},
}

func knownCollation(name string) bool {
	if name == "nocase" || name == "binary" || name == "rtrim" {
		return true // SQLite's own
	}
	_, ok := versionCollations[name]
	return ok
}

func registerCollations(d *sqlite.Driver) error {
	for name, rules := range versionCollations {
		rules := rules
		if err := d.RegisterCollationUtf8(name, func(a, b string) int { return compareVersions(a, b, rules) }); err != nil {
			return fmt.Errorf("registering collation %s: %w", name, err)
		}
	}
	return nil
}

// versionCompareFunc is version_compare(a, b[, 'ARCH'|'DPKG'|'RHEL']):
// -1, 0 or 1.
func versionCompareFunc(args []driver.Value) (driver.Value, error) {
	if len(args) < 2 {
		return nil, errors.New("Must provide two version strings to compare.")
	}
	a, ok1 := args[0].(string)
	b, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, errors.New("Must provide two version strings to compare.")
	}
	var rules versionRules
	if len(args) > 2 {
		flavor, ok := args[2].(string)
		if !ok {
			return nil, errors.New("The optional third parameter is not a string.")
		}
		switch strings.ToUpper(flavor) {
		case "ARCH":
			rules = versionCollations["version_arch"]
		case "DPKG":
			rules = versionCollations["version_dpkg"]
		case "RHEL":
			rules = versionCollations["version_rhel"]
		default:
			return nil, errors.New("The optional third parameter does not match one of: (ARCH, DPKG, RHEL).")
		}
	}
	return int64(sign(compareVersions(a, b, rules))), nil
}

// delimRank is 0 for a non-delimiter, else the delimiter's precedence.
func delimRank(c byte) int { return strings.IndexByte("~-^.:", c) + 1 }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func compareVersions(l, r string, rules versionRules) int {
	switch {
	case l == r:
		return 0
	case l == "":
		return -1
	case r == "":
		return 1
	}
	if rules.epoch {
		le, re := strings.IndexByte(l, ':'), strings.IndexByte(r, ':')
		switch {
		case le >= 0 && re >= 0:
			if le != re {
				return le - re
			}
		case le >= 0:
			return 1
		case re >= 0:
			return -1
		}
	}
	n := min(len(l), len(r))
	diff := 0 // first difference within the current segment
	for i := 0; i < n; i++ {
		ld, rd := delimRank(l[i]), delimRank(r[i])
		switch {
		case ld == 0 && rd == 0:
			if diff == 0 {
				diff = int(l[i]) - int(r[i])
			}
			continue
		case ld == 0:
			return 1 // the right segment ended first
		case rd == 0:
			return -1
		}
		if diff != 0 {
			return diff
		}
		if rules.delimOrder && ld != rd {
			return ld - rd
		}
	}
	if len(l) == len(r) {
		return diff
	}
	// One version goes on after the common part.
	longer, shorter, flip := r, l, 1
	if len(l) > len(r) {
		longer, shorter, flip = l, r, -1
	}
	if rules.remaining {
		switch longer[n] {
		case '~':
			return flip // the longer one is smaller
		case '-':
			return 0
		case '^':
			return -flip
		default:
			if diff != 0 && (!rules.remPrec || !isDigit(shorter[n-1])) {
				return diff
			}
		}
	} else if diff != 0 && delimRank(longer[n]) > 0 {
		return diff
	}
	return len(l) - len(r)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
