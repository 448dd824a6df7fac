package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/vigilhq/vigil"
)

// EncodeColumns encodes a raw result row for the columns column of the
// results table: a JSON object of strings with keys sorted, so the same row
// always encodes the same way. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does. It is hand-written because it runs for every row
// ingested and encoding/json's reflection was the largest cost of an append.
func EncodeColumns(cols map[string]string) string {
	if len(cols) == 0 {
		return "{}"
	}
	// Stack buffers for the common row: one allocation, the result.
	var keyStack [32]string
	var bufStack [1024]byte
	keys := keyStack[:0]
	size := 2
	for k, v := range cols {
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	b := bufStack[:0]
	if size > len(bufStack) {
		b = make([]byte, 0, size)
	}
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, cols[k])
	}
	b = append(b, '}')
	return string(b)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ResultColumns is r's columns encoded by EncodeColumns: r.ColumnsJSON
// when ingest set it.
func ResultColumns(r *vigil.ResultRow) string {
	if r.ColumnsJSON != "" {
		return r.ColumnsJSON
	}
	return EncodeColumns(r.Columns)
}

// DecodeColumns decodes what EncodeColumns produced.
func DecodeColumns(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("store: decoding columns: %w", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}
