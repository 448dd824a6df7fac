package sigma

import (
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// alternation renders literals as one RE2 alternation, factoring common
// prefixes into groups so that long lists (thousands of hashes sharing
// "SHA256=") stay well below ClickHouse's max_query_size. It matches
// exactly the strings (?:a|b|c) would.
func alternation(lits []string) string {
	sorted := append([]string(nil), lits...)
	sort.Strings(sorted)
	var b strings.Builder
	writeAlternation(&b, dedupe(sorted))
	return b.String()
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// writeAlternation writes sorted, distinct literals as an alternation
// without an enclosing group.
func writeAlternation(b *strings.Builder, lits []string) {
	empty := false
	var rest []string
	for _, l := range lits {
		if l == "" {
			empty = true
		} else {
			rest = append(rest, l)
		}
	}
	// Partition by first rune; sorted input keeps each partition together.
	var alts []string
	for i := 0; i < len(rest); {
		r := firstRune(rest[i])
		j := i + 1
		for j < len(rest) && firstRune(rest[j]) == r {
			j++
		}
		alts = append(alts, factor(rest[i:j]))
		i = j
	}
	if empty {
		// An empty alternative matches everywhere; keep it explicit.
		alts = append(alts, "")
	}
	b.WriteString(strings.Join(alts, "|"))
}

// factor renders literals sharing a first rune: their longest common
// prefix, then the alternation of the remainders.
func factor(lits []string) string {
	if len(lits) == 1 {
		return regexp.QuoteMeta(lits[0])
	}
	p := lits[0]
	for _, l := range lits[1:] {
		p = commonPrefix(p, l)
	}
	var sub strings.Builder
	tails := make([]string, len(lits))
	for i, l := range lits {
		tails[i] = l[len(p):]
	}
	writeAlternation(&sub, tails)
	return regexp.QuoteMeta(p) + "(?:" + sub.String() + ")"
}

// commonPrefix is the longest common prefix of whole runes.
func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) {
		ra, sa := firstRuneSize(a[n:])
		rb, _ := firstRuneSize(b[n:])
		if ra != rb {
			break
		}
		n += sa
	}
	return a[:n]
}

func firstRune(s string) rune { r, _ := utf8.DecodeRuneInString(s); return r }

func firstRuneSize(s string) (rune, int) { return utf8.DecodeRuneInString(s) }
