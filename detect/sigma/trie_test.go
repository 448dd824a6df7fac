package sigma

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAlternation(t *testing.T) {
	lits := []string{"SHA1=ab", "SHA1=ac", "SHA256=ff", "MD5=01", "md5=01", "x.y", "x+", "über", "üb", "a", "", "a"}
	re := alternation(lits)
	if want := `(?:)`; strings.Contains(re, want) {
		t.Errorf("empty group in %s", re)
	}
	full := regexp.MustCompile("^(?:" + re + ")$")
	for _, l := range lits {
		if !full.MatchString(l) {
			t.Errorf("%q not matched by %s", l, re)
		}
	}
	for _, l := range []string{"SHA1=a", "SHA256=f", "xxy", "x", "übe", "b", "SHA1=abc"} {
		if full.MatchString(l) {
			t.Errorf("%q wrongly matched by %s", l, re)
		}
	}
	if got, want := alternation([]string{"SHA1=ab", "SHA1=ac", "SHA256=ff"}), `SHA(?:1=a(?:b|c)|256=ff)`; got != want {
		t.Errorf("alternation %s, want %s", got, want)
	}
}

func FuzzAlternation(f *testing.F) {
	f.Add("a,ab,abc", "ab")
	f.Add("x.y,x+y,ü", "xzy")
	f.Fuzz(func(t *testing.T, list, probe string) {
		lits := strings.Split(list, ",")
		for _, l := range lits {
			if !utf8.ValidString(l) {
				t.Skip()
			}
		}
		re, err := regexp.Compile("^(?:" + alternation(lits) + ")$")
		if err != nil {
			t.Fatalf("alternation of %q does not compile: %v", lits, err)
		}
		plain := make([]string, len(lits))
		for i, l := range lits {
			plain[i] = regexp.QuoteMeta(l)
		}
		ref := regexp.MustCompile("^(?:" + strings.Join(plain, "|") + ")$")
		for _, s := range append(lits, probe) {
			if re.MatchString(s) != ref.MatchString(s) {
				t.Fatalf("%q: factored %s disagrees with the plain alternation", s, re)
			}
		}
	})
}
