package sigma

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vigilhq/vigil"
)

// Kind classifies an Error so that reports can count why rules did not
// convert.
type Kind int

// Error kinds.
const (
	KindSyntax      Kind = iota // the document is not valid Sigma
	KindUnsupported             // valid Sigma that Vigil cannot compile
	KindUnmapped                // a field or logsource with no place in the schema
)

func (k Kind) String() string {
	switch k {
	case KindUnsupported:
		return "unsupported"
	case KindUnmapped:
		return "unmapped"
	default:
		return "syntax"
	}
}

// Pos is a position in a rule file, 1-based.
type Pos struct {
	Line, Col int
}

// Error is a problem with one rule, located in its file. Its message reads
// "file:line:col: what is wrong".
type Error struct {
	File string
	Pos  Pos
	Kind Kind
	Msg  string

	noTable bool // the rule's logsource has no table in the mapping
}

// NoTable reports whether err is a rule whose logsource has no event
// table in the mapping it was compiled with (a KindUnmapped Error), so
// that a caller can suggest another mapping such as CatalogMapping.
func NoTable(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.noTable
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Pos.Line)
		if e.Pos.Col > 0 {
			fmt.Fprintf(&b, "%d:", e.Pos.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every Error an invalid-input error for the HTTP edge.
func (e *Error) Unwrap() error { return vigil.ErrInvalid }

func errorf(file string, p Pos, kind Kind, format string, args ...any) *Error {
	return &Error{File: file, Pos: p, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// suggest returns the candidate closest to s by edit distance when it is
// close enough to be a likely typo, or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= 2 || (bestD <= 3 && len(s) > 6) {
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions ("contians") each
// cost one.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
