package clickhouse

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
)

func TestBind(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 900, time.FixedZone("x", 3600))
	cases := []struct {
		q    string
		args []any
		want string
	}{
		{"SELECT ?", []any{"it's"}, `SELECT 'it\'s'`},
		{"SELECT ?, ?", []any{`a\b`, int64(-3)}, `SELECT 'a\\b', -3`},
		{"SELECT '?', `?`, \"?\", ? -- ?\n/* ? */", []any{true}, "SELECT '?', `?`, \"?\", 1 -- ?\n/* ? */"},
		{"SELECT 'it''s ?', ?", []any{nil}, "SELECT 'it''s ?', NULL"},
		{"WHERE t >= ?", []any{at}, "WHERE t >= toDateTime('2026-03-14 14:09:26', 'UTC')"},
		{"SELECT ?", []any{1.5}, "SELECT 1.5"},
		{"SELECT ?", []any{"\x00"}, `SELECT '\0'`},
	}
	for _, c := range cases {
		got, err := Bind(c.q, c.args...)
		if err != nil || got != c.want {
			t.Errorf("Bind(%q, %v) = %q, %v; want %q", c.q, c.args, got, err, c.want)
		}
	}
	for _, bad := range []struct {
		q    string
		args []any
	}{
		{"SELECT ?", nil},
		{"SELECT 1", []any{1}},
		{"SELECT ?, ?", []any{1}},
		{"SELECT ?", []any{struct{}{}}},
		{"SELECT /* ?", []any{1}},
		{"SELECT 'unterminated ?", []any{1}},
	} {
		if _, err := Bind(bad.q, bad.args...); !errors.Is(err, vigil.ErrInvalid) {
			t.Errorf("Bind(%q, %v): %v, want ErrInvalid", bad.q, bad.args, err)
		}
	}
}

// unquote is an independent reader of a ClickHouse string literal.
func unquote(t *testing.T, lit string) string {
	t.Helper()
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		t.Fatalf("not a literal: %q", lit)
	}
	var b strings.Builder
	body := lit[1 : len(lit)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\' && i+1 < len(body):
			i++
			if body[i] == '0' {
				b.WriteByte(0)
			} else {
				b.WriteByte(body[i])
			}
		case c == '\'':
			t.Fatalf("unescaped quote in %q", lit)
		case c == '\\':
			t.Fatalf("dangling backslash in %q", lit)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzBind: a bound string value stays one literal that reads back as
// the value, and placeholders in quotes and comments are left alone.
func FuzzBind(f *testing.F) {
	f.Add("it's a \\ test ? -- /*")
	f.Add("\x00'\\''")
	f.Fuzz(func(t *testing.T, v string) {
		q := "SELECT ?, '?' -- ?\n"
		got, err := Bind(q, v)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(got, "SELECT ")
		if !ok || !strings.HasSuffix(lit, ", '?' -- ?\n") {
			t.Fatalf("structure changed: %q", got)
		}
		lit = strings.TrimSuffix(lit, ", '?' -- ?\n")
		if u := unquote(t, lit); u != v {
			t.Fatalf("literal %s reads back as %q, want %q", lit, u, v)
		}
	})
}
