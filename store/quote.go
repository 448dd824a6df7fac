package store

import "strings"

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
