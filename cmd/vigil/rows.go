package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// orderedRow is one live-query result row with its columns in the order the
// server sent them. osquery writes each row as a JSON object whose keys
// follow the SELECT list; decoding into a map would lose that order and
// print the columns alphabetically.
type orderedRow struct {
	keys   []string
	values map[string]string
}

// UnmarshalJSON reads a JSON object of strings (null reads as ""), keeping
// the order of its keys; a repeated key keeps its first place and its last
// value, as encoding/json does for maps.
func (r *orderedRow) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("row: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("row: want a JSON object, got %v", tok)
	}
	r.keys, r.values = nil, map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("row: %w", err)
		}
		k, ok := tok.(string)
		if !ok {
			return fmt.Errorf("row: want a column name, got %v", tok)
		}
		var v *string
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("row: column %q: %w", k, err)
		}
		if _, seen := r.values[k]; !seen {
			r.keys = append(r.keys, k)
		}
		r.values[k] = ""
		if v != nil {
			r.values[k] = *v
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("row: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("row: data after the object")
	}
	return nil
}

// MarshalJSON writes the row as a JSON object with the keys in order.
func (r orderedRow) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(r.values[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// order returns the row's columns: those of columns first (the server's
// column list, when it sends one), then the rest in the order received.
func (r orderedRow) order(columns []string) []string {
	if len(columns) == 0 {
		return r.keys
	}
	out := make([]string, 0, len(r.keys))
	seen := make(map[string]bool, len(columns))
	for _, c := range columns {
		if _, ok := r.values[c]; ok && !seen[c] {
			out = append(out, c)
			seen[c] = true
		}
	}
	for _, k := range r.keys {
		if !seen[k] {
			out = append(out, k)
		}
	}
	return out
}

// inOrder returns the row with its keys in the given order.
func (r orderedRow) inOrder(keys []string) orderedRow {
	return orderedRow{keys: keys, values: r.values}
}

// formatRow prints a row as col="value" pairs in column order.
func formatRow(r orderedRow) string {
	var b strings.Builder
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", k, r.values[k])
	}
	return b.String()
}
