package sigma

import (
	"sort"

	"github.com/vigilhq/vigil/schema"
)

// Mapping resolves a rule's logsource to an event table and its Sigma
// fields to columns. Column names come only from here, never from rules.
type Mapping interface {
	Table(ls Logsource) (schema.Table, bool)
	Column(t schema.Table, field string) (schema.Column, bool)
	// Fields lists the Sigma fields of a table, for suggestions.
	Fields(t schema.Table) []string
	// KeywordColumns are the columns keyword (fieldless) searches look in.
	KeywordColumns(t schema.Table) []schema.Column
}

// SchemaMapping is the mapping of the schema package: the logsource
// category names the table, and schema.SigmaField maps fields.
type SchemaMapping struct{}

var _ Mapping = SchemaMapping{}

func (SchemaMapping) Table(ls Logsource) (schema.Table, bool) {
	if ls.Category == "" {
		return schema.Table{}, false
	}
	return schema.Lookup(ls.Category)
}

func (SchemaMapping) Column(t schema.Table, field string) (schema.Column, bool) {
	name, ok := schema.SigmaField(t.Name, field)
	if !ok {
		return hostColumn(t, field)
	}
	return columnOf(t, name)
}

func (SchemaMapping) Fields(t schema.Table) []string {
	out := make([]string, 0, len(t.Fields))
	for f := range t.Fields {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func (SchemaMapping) KeywordColumns(t schema.Table) []schema.Column { return keywordColumns(t) }

// keywordColumns is the raw event text when the table keeps it, else every
// text column of the table's own.
func keywordColumns(t schema.Table) []schema.Column {
	if c, ok := columnOf(t, "message"); ok && c.Type == schema.Text {
		return []schema.Column{c}
	}
	var out []schema.Column
	for _, c := range t.Columns {
		if c.Type == schema.Text {
			out = append(out, c)
		}
	}
	return out
}

// CatalogMapping resolves logsources and fields through the Sigma catalog
// of the schema package (schema.SigmaLookup): every logsource and field of
// the SigmaHQ corpus has a table and column there.
type CatalogMapping struct{}

var _ Mapping = CatalogMapping{}

func (CatalogMapping) Table(ls Logsource) (schema.Table, bool) {
	return schema.SigmaLookup(schema.SigmaLogsource{Product: ls.Product, Category: ls.Category, Service: ls.Service})
}

func (CatalogMapping) Column(t schema.Table, field string) (schema.Column, bool) {
	name, ok := t.Fields[field]
	if !ok {
		return hostColumn(t, field)
	}
	return columnOf(t, name)
}

// hostFields are the Sigma fields naming the computer an event comes
// from (Windows event logs' Computer, which Sigma rules and the
// specification's correlation examples call ComputerName). Every event
// table has the common hostname column, so these fields resolve to it in
// every table that does not map them otherwise.
var hostFields = []string{"ComputerName", "Computer"}

func hostColumn(t schema.Table, field string) (schema.Column, bool) {
	for _, f := range hostFields {
		if f == field {
			return columnOf(t, "hostname")
		}
	}
	return schema.Column{}, false
}

func (CatalogMapping) Fields(t schema.Table) []string { return SchemaMapping{}.Fields(t) }

func (CatalogMapping) KeywordColumns(t schema.Table) []schema.Column { return keywordColumns(t) }

func columnOf(t schema.Table, name string) (schema.Column, bool) {
	for _, c := range t.AllColumns() {
		if c.Name == name {
			return c, true
		}
	}
	return schema.Column{}, false
}
