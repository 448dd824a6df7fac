package store

import (
	"strings"
	"unicode/utf8"
)

// ClickHouseString quotes s as a ClickHouse string literal. It is the one
// escaping function for ClickHouse values: detect/sigma renders rule values
// with it and store/clickhouse binds query parameters with it. ClickHouse
// reads backslash escapes in literals, so backslash and quote are both
// escaped; NUL is written as \0 because the parser stops at a raw one.
func ClickHouseString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// DuckDBString quotes s as a DuckDB string literal. It is the one escaping
// function for DuckDB values: DuckDB's standard strings know no backslash
// escapes, so doubling the quote is the whole escaping. DuckDB reads a
// statement as a NUL-terminated UTF-8 string, so s with a NUL byte or
// invalid UTF-8 cannot be written as a literal: ok is false and the caller
// must not build the statement.
func DuckDBString(s string) (lit string, ok bool) {
	if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
		return "", false
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", true
}
