// Command catalog generates schema/sigma_catalog_gen.go: the event tables
// and columns for every logsource and taxonomy field used by a Sigma rule
// corpus. Run from the repository root:
//
//	go run ./detect/sigma/internal/catalog -corpus ../shared/sigma-rules -out schema/sigma_catalog_gen.go
//
// Column names are derived from field names (snake case); a column is
// BIGINT only when every value the corpus compares it with is an integer.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/vigilhq/vigil/detect/sigma"
	"github.com/vigilhq/vigil/schema"
)

type fieldInfo struct {
	numeric bool // every value seen is an integer compared as such
	seen    bool
}

type tableInfo struct {
	name       string
	base       string // core table extended, if any
	logsources map[[3]string]bool
	fields     map[string]*fieldInfo
}

func main() {
	corpus := flag.String("corpus", "../shared/sigma-rules", "Sigma rule corpus")
	out := flag.String("out", "schema/sigma_catalog_gen.go", "output file")
	flag.Parse()
	src, err := generate(*corpus)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// generate reads the corpus and renders the catalog source.
func generate(corpus string) ([]byte, error) {
	tables := map[string]*tableInfo{}
	err := filepath.WalkDir(corpus, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yml") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rules, _ := sigma.Parse(p, data)
		for _, r := range rules {
			if r.Kind != sigma.KindRule {
				continue
			}
			name, base := tableName(r.Logsource)
			t := tables[name]
			if t == nil {
				t = &tableInfo{name: name, base: base, logsources: map[[3]string]bool{}, fields: map[string]*fieldInfo{}}
				tables[name] = t
			}
			ls := r.Logsource
			t.logsources[[3]string{ls.Product, ls.Category, ls.Service}] = true
			for _, s := range r.Detection.Searches {
				walk(s.Expr, t)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return render(tables)
}

// tableName places a logsource: categories of the operating systems share
// one table per category; anything else gets product_service (or
// product_category) so that unrelated products never share columns.
func tableName(ls sigma.Logsource) (name, base string) {
	os := ls.Product == "" || ls.Product == "windows" || ls.Product == "linux" || ls.Product == "macos"
	switch {
	case ls.Category != "" && os:
		name = ls.Category
	case ls.Service != "":
		name = join(ls.Product, ls.Service)
	case ls.Category != "":
		name = join(ls.Product, ls.Category)
	default:
		name = join(ls.Product, "events")
	}
	name = ident(name)
	if _, ok := schema.Lookup(name); ok {
		base = name
	}
	return name, base
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "_" + b
}

func walk(e sigma.Expr, t *tableInfo) {
	switch e := e.(type) {
	case sigma.And:
		for _, x := range e.Items {
			walk(x, t)
		}
	case sigma.Or:
		for _, x := range e.Items {
			walk(x, t)
		}
	case *sigma.Match:
		if e.Field == "" {
			return
		}
		fi := t.fields[e.Field]
		if fi == nil {
			fi = &fieldInfo{numeric: true}
			t.fields[e.Field] = fi
		}
		fi.seen = true
		stringy := false
		for _, m := range e.Modifiers {
			switch m.Name {
			case "lt", "lte", "gt", "gte", "neq", "exists":
			case "fieldref":
				for _, v := range e.Values {
					if t.fields[v.Raw] == nil {
						t.fields[v.Raw] = &fieldInfo{seen: true}
					}
				}
				stringy = true
			default:
				stringy = true
			}
		}
		for _, v := range e.Values {
			if v.Kind == sigma.ValNull {
				continue
			}
			if _, err := strconv.ParseInt(v.Raw, 10, 64); err != nil || v.Kind != sigma.ValNumber || stringy {
				fi.numeric = false
			}
		}
	}
}

// common maps Sigma fields naming the event's host to the common column.
var common = map[string]string{
	"ComputerName": "hostname",
	"Computer":     "hostname",
	"Hostname":     "hostname",
	"EventID":      "event_code",
}

func column(field string) string {
	if c, ok := common[field]; ok {
		return c
	}
	c := ident(snake(field))
	switch c {
	case "event_id", "host_id", "hostname", "event_time", "ingested_at", "seq":
		c = "sigma_" + c
	}
	return c
}

// snake turns "TargetUserSid" into target_user_sid, "cs-uri-stem" into
// cs_uri_stem and "EventID" into event_id.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case unicode.IsUpper(r):
			if i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]) ||
				(i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ident keeps [a-z0-9_], collapses underscores and never starts with a
// digit.
func ident(s string) string {
	var b strings.Builder
	last := byte('_')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		default:
			c = '_'
		}
		if c == '_' && last == '_' {
			continue
		}
		b.WriteByte(c)
		last = c
	}
	out := strings.TrimRight(b.String(), "_")
	if out == "" || (out[0] >= '0' && out[0] <= '9') {
		out = "f_" + out
	}
	return out
}

func render(tables map[string]*tableInfo) ([]byte, error) {
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("// Code generated by detect/sigma/internal/catalog from the SigmaHQ corpus; DO NOT EDIT.\n\n")
	b.WriteString("package schema\n\n")
	b.WriteString("// sigmaCatalog lists the tables Sigma rules of each logsource compile\n// against, with the columns for the taxonomy fields rules use.\nvar sigmaCatalog = []sigmaTable{\n")
	for _, n := range names {
		t := tables[n]
		fmt.Fprintf(&b, "\t{\n\t\tName: %q,\n", t.name)
		if t.base != "" {
			fmt.Fprintf(&b, "\t\tBase: %q,\n", t.base)
		}
		var lss [][3]string
		for ls := range t.logsources {
			lss = append(lss, ls)
		}
		sort.Slice(lss, func(i, j int) bool { return fmt.Sprint(lss[i]) < fmt.Sprint(lss[j]) })
		b.WriteString("\t\tLogsources: []SigmaLogsource{\n")
		for _, ls := range lss {
			fmt.Fprintf(&b, "\t\t\t{Product: %q, Category: %q, Service: %q},\n", ls[0], ls[1], ls[2])
		}
		b.WriteString("\t\t},\n")
		var base schema.Table
		if t.base != "" {
			base, _ = schema.Lookup(t.base)
		}
		var fields []string
		for f := range t.fields {
			if _, ok := base.Fields[f]; ok {
				continue // the core table maps it already
			}
			fields = append(fields, f)
		}
		sort.Strings(fields)
		cols := map[string]string{}    // column -> type
		descs := map[string][]string{} // column -> Sigma fields
		var colOrder []string
		if t.base == "" {
			// Keyword searches look in the raw event text.
			cols["message"] = "Text"
			colOrder = append(colOrder, "message")
			descs["message"] = []string{"raw event text"}
		}
		b.WriteString("\t\tFields: map[string]string{\n")
		for _, f := range fields {
			c := column(f)
			if c == "hostname" {
				fmt.Fprintf(&b, "\t\t\t%q: %q,\n", f, c)
				continue
			}
			if base.HasColumn(c) {
				c = "sigma_" + c // a core column with other semantics
			}
			typ := "Text"
			if t.fields[f].numeric {
				typ = "BigInt"
			}
			descs[c] = append(descs[c], f)
			if old, ok := cols[c]; ok {
				if old != typ {
					cols[c] = "Text"
				}
			} else {
				cols[c] = typ
				colOrder = append(colOrder, c)
			}
			fmt.Fprintf(&b, "\t\t\t%q: %q,\n", f, c)
		}
		b.WriteString("\t\t},\n")
		b.WriteString("\t\tColumns: []Column{\n")
		for _, c := range colOrder {
			fmt.Fprintf(&b, "\t\t\t{%q, %s, %q},\n", c, cols[c], "Sigma: "+strings.Join(descs[c], ", "))
		}
		b.WriteString("\t\t},\n\t},\n")
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}
