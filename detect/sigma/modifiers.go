package sigma

import (
	"encoding/base64"
	"sort"
	"strings"
	"unicode/utf16"
)

// modifierInfo lists every modifier of sigma-appendix-modifiers.md.
var modifierInfo = map[string]string{
	"all":          "generic",
	"startswith":   "place",
	"endswith":     "place",
	"contains":     "place",
	"exists":       "type",
	"cased":        "generic",
	"neq":          "generic",
	"windash":      "transform",
	"re":           "type",
	"i":            "reflag",
	"m":            "reflag",
	"s":            "reflag",
	"base64":       "transform",
	"base64offset": "transform",
	"utf16le":      "transform",
	"utf16be":      "transform",
	"utf16":        "transform",
	"wide":         "transform",
	"lt":           "compare",
	"lte":          "compare",
	"gt":           "compare",
	"gte":          "compare",
	"minute":       "time",
	"hour":         "time",
	"day":          "time",
	"week":         "time",
	"month":        "time",
	"year":         "time",
	"cidr":         "type",
	"expand":       "expand",
	"fieldref":     "type",
}

func knownModifier(name string) bool { _, ok := modifierInfo[name]; return ok }

func modifierNames() []string {
	out := make([]string, 0, len(modifierInfo))
	for k := range modifierInfo {
		if len(k) > 1 { // do not suggest the one-letter regex flags
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// modset is a match's modifiers, checked for combinations that make sense.
type modset struct {
	all, cased, neq bool
	place           string // "", contains, startswith, endswith
	typ             string // "", exists, re, cidr, fieldref
	reFlags         string
	compare         string // lt, lte, gt, gte
	timePart        string // minute ... year
	expand          bool
	transforms      []Modifier // in order: windash, base64, base64offset, utf16*, wide, and placement
}

func (c *compiler) modifiers(m *Match) (modset, error) {
	var ms modset
	seen := map[string]bool{}
	for _, mod := range m.Modifiers {
		if seen[mod.Name] {
			return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q given twice", mod.Name)
		}
		seen[mod.Name] = true
		switch modifierInfo[mod.Name] {
		case "generic":
			switch mod.Name {
			case "all":
				ms.all = true
			case "cased":
				ms.cased = true
			case "neq":
				ms.neq = true
			}
		case "place":
			if ms.place != "" {
				return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q cannot follow %q", mod.Name, ms.place)
			}
			ms.place = mod.Name
			ms.transforms = append(ms.transforms, mod)
		case "type":
			if ms.typ != "" {
				return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q cannot be combined with %q", mod.Name, ms.typ)
			}
			ms.typ = mod.Name
		case "reflag":
			if ms.typ != "re" {
				return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q is a flag of \"re\" and must follow it", mod.Name)
			}
			ms.reFlags += mod.Name
		case "transform":
			ms.transforms = append(ms.transforms, mod)
		case "compare":
			if ms.compare != "" {
				return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q cannot be combined with %q", mod.Name, ms.compare)
			}
			ms.compare = mod.Name
		case "time":
			if ms.timePart != "" {
				return ms, c.errAt(mod.Pos, KindSyntax, "modifier %q cannot be combined with %q", mod.Name, ms.timePart)
			}
			ms.timePart = mod.Name
		case "expand":
			ms.expand = true
		}
	}
	// Combinations.
	bad := func(what string) error {
		return c.errAt(m.Pos, KindSyntax, "modifiers %s cannot be combined", what)
	}
	hasTransform := false
	for _, t := range ms.transforms {
		if modifierInfo[t.Name] == "transform" {
			hasTransform = true
		}
	}
	switch ms.typ {
	case "exists":
		if len(m.Modifiers) > 1 {
			return ms, bad(`"exists" and others`)
		}
	case "re", "cidr":
		if ms.place != "" || hasTransform || ms.compare != "" || ms.timePart != "" || ms.expand {
			return ms, bad(quote(ms.typ) + " and string, numeric or time modifiers")
		}
	case "fieldref":
		if hasTransform || ms.compare != "" || ms.timePart != "" || ms.expand {
			return ms, bad(`"fieldref" and transformations`)
		}
	}
	if (ms.compare != "" || ms.timePart != "") && (ms.place != "" || hasTransform || ms.expand || ms.typ != "") {
		return ms, bad("numeric or time and string")
	}
	// Base64 text is case-sensitive: "SQBFAFgA" and "sqbfafga" encode
	// different bytes, so encoded values are matched exactly.
	for _, t := range ms.transforms {
		if t.Name == "base64" || t.Name == "base64offset" {
			ms.cased = true
		}
	}
	return ms, nil
}

// Transformations of literal values.

// utf16Bytes encodes s as UTF-16 in the given byte order, with a byte
// order mark (FF FE, little endian) when bom is set.
func utf16Bytes(s string, bigEndian, bom bool) string {
	units := utf16.Encode([]rune(s))
	var b strings.Builder
	if bom {
		b.WriteString("\xff\xfe")
	}
	for _, u := range units {
		if bigEndian {
			b.WriteByte(byte(u >> 8))
			b.WriteByte(byte(u))
		} else {
			b.WriteByte(byte(u))
			b.WriteByte(byte(u >> 8))
		}
	}
	return b.String()
}

// base64Offsets returns the three encodings of s that appear in the
// base64 of any text containing s, for its three possible alignments:
// the bytes around s change the first and last characters, which are cut.
func base64Offsets(s string) []string {
	startCut := [3]int{0, 2, 3}
	endCut := [3]int{0, 3, 2} // characters cut at the end, by (len+shift)%3
	out := make([]string, 0, 3)
	for shift := 0; shift < 3; shift++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(" ", shift) + s))
		end := len(enc) - endCut[(len(s)+shift)%3]
		if startCut[shift] >= end {
			continue
		}
		out = append(out, enc[startCut[shift]:end])
	}
	return out
}
