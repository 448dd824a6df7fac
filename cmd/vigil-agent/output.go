package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/vigilhq/vigil/agent/table"
)

// printResult writes res in one of the osqueryi modes.
func printResult(w io.Writer, format string, res table.Result) error {
	switch format {
	case "json":
		return writeJSONRows(w, res)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(res.Columns); err != nil {
			return err
		}
		for _, r := range res.Rows {
			rec := make([]string, len(res.Columns))
			for i, c := range res.Columns {
				rec[i] = r[c]
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "line":
		width := 0
		for _, c := range res.Columns {
			width = max(width, utf8.RuneCountInString(c))
		}
		for i, r := range res.Rows {
			if i > 0 {
				fmt.Fprintln(w)
			}
			for _, c := range res.Columns {
				fmt.Fprintf(w, "%*s = %s\n", width, c, r[c])
			}
		}
		return nil
	}
	return writeBox(w, res.Columns, res.Rows)
}

// writeJSONRows writes a JSON array of objects with keys in column order,
// as osqueryi --json does.
func writeJSONRows(w io.Writer, res table.Result) error {
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, r := range res.Rows {
		buf.WriteString("  {")
		for j, c := range res.Columns {
			if j > 0 {
				buf.WriteString(",")
			}
			k, _ := json.Marshal(c)
			v, _ := json.Marshal(r[c])
			buf.Write(k)
			buf.WriteString(":")
			buf.Write(v)
		}
		buf.WriteString("}")
		if i < len(res.Rows)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("]\n")
	_, err := w.Write(buf.Bytes())
	return err
}

// writeBox writes osqueryi's boxed table.
func writeBox(w io.Writer, cols []string, rows []map[string]string) error {
	if len(cols) == 0 {
		return nil
	}
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = utf8.RuneCountInString(c)
		for _, r := range rows {
			width[i] = max(width[i], utf8.RuneCountInString(r[c]))
		}
	}
	var sb strings.Builder
	sep := func() {
		sb.WriteString("+")
		for _, n := range width {
			sb.WriteString(strings.Repeat("-", n+2))
			sb.WriteString("+")
		}
		sb.WriteString("\n")
	}
	line := func(vals []string) {
		sb.WriteString("|")
		for i, v := range vals {
			sb.WriteString(" ")
			sb.WriteString(v)
			sb.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(v)+1))
			sb.WriteString("|")
		}
		sb.WriteString("\n")
	}
	sep()
	line(cols)
	sep()
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r[c]
		}
		line(vals)
	}
	if len(rows) > 0 {
		sep()
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

type columnJSON struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Hidden   bool   `json:"hidden,omitempty"`
	Required bool   `json:"required,omitempty"`
	Index    bool   `json:"index,omitempty"`
	Collate  string `json:"collate,omitempty"`
}

type tableJSON struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Event       bool         `json:"event,omitempty"`
	Columns     []columnJSON `json:"columns"`
}

// printTables lists tables (only the named ones if names is not empty).
func printTables(w io.Writer, format string, schemas []table.Schema, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []tableJSON
	for _, s := range schemas {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		t := tableJSON{Name: s.Name, Description: s.Description, Event: s.Event}
		for _, c := range s.Columns {
			t.Columns = append(t.Columns, columnJSON(c))
		}
		out = append(out, t)
	}
	for n := range want {
		found := false
		for _, t := range out {
			found = found || t.Name == n
		}
		if !found {
			return fmt.Errorf("no such table: %s", n)
		}
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	var sb strings.Builder
	for i, t := range out {
		if i > 0 {
			sb.WriteString("\n")
		}
		kind := ""
		if t.Event {
			kind = " (event)"
		}
		fmt.Fprintf(&sb, "%s%s: %s\n", t.Name, kind, t.Description)
		for _, c := range t.Columns {
			var attrs []string
			if c.Hidden {
				attrs = append(attrs, "hidden")
			}
			if c.Required {
				attrs = append(attrs, "required")
			}
			if c.Index {
				attrs = append(attrs, "index")
			}
			extra := ""
			if len(attrs) > 0 {
				extra = "  (" + strings.Join(attrs, ", ") + ")"
			}
			fmt.Fprintf(&sb, "  %-24s %s%s\n", c.Name, c.Type, extra)
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
