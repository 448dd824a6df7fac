package clickhouse

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// ClickHouse 18.16 has no server-side query parameters, so values are
// bound here, by Bind, into literals written by Literal. These two are the
// only places that put values into SQL text.

// Literal returns v as a ClickHouse literal: strings quoted with every
// backslash and quote escaped, times as toDateTime('...', 'UTC') (whole
// seconds, the precision of DateTime), numbers in decimal, bools as 1/0,
// nil as NULL.
func Literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quoteString(x), nil
	case []byte:
		return quoteString(string(x)), nil
	case int:
		return strconv.Itoa(x), nil
	case int8, int16, int32, int64:
		return fmt.Sprintf("%d", x), nil
	case uint, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("%d", x), nil
	case float32:
		return floatLiteral(float64(x))
	case float64:
		return floatLiteral(x)
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case time.Time:
		return "toDateTime(" + quoteString(x.UTC().Format(dateTimeLayout)) + ", 'UTC')", nil
	}
	return "", fmt.Errorf("clickhouse: cannot bind a %T: %w", v, vigil.ErrInvalid)
}

const dateTimeLayout = "2006-01-02 15:04:05"

func floatLiteral(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("clickhouse: cannot bind %v: %w", f, vigil.ErrInvalid)
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}

// quoteString quotes s for a ClickHouse string literal.
func quoteString(s string) string { return store.ClickHouseString(s) }

// Bind replaces each ? placeholder of q outside string literals, quoted
// identifiers and comments with the literal of the matching argument. The
// number of placeholders must equal len(args).
func Bind(q string, args ...any) (string, error) {
	if len(args) == 0 && !strings.Contains(q, "?") {
		return q, nil
	}
	var b strings.Builder
	b.Grow(len(q) + 16*len(args))
	n := 0
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := skipQuoted(q, i)
			b.WriteString(q[i:j])
			i = j
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return "", fmt.Errorf("clickhouse: unterminated comment at byte %d: %w", i, vigil.ErrInvalid)
			}
			b.WriteString(q[i : i+2+j+2])
			i += 2 + j + 2
		case c == '?':
			if n >= len(args) {
				return "", fmt.Errorf("clickhouse: query has more placeholders than the %d arguments: %w", len(args), vigil.ErrInvalid)
			}
			lit, err := Literal(args[n])
			if err != nil {
				return "", fmt.Errorf("argument %d: %w", n+1, err)
			}
			b.WriteString(lit)
			n++
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	if n != len(args) {
		return "", fmt.Errorf("clickhouse: query has %d placeholders for %d arguments: %w", n, len(args), vigil.ErrInvalid)
	}
	return b.String(), nil
}

// skipQuoted returns the index after the quoted token starting at i
// (backslash escapes and doubled quotes), or len(q) when unterminated, in
// which case the server reports the syntax error.
func skipQuoted(q string, i int) int {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			j++
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}
