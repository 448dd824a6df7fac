package schema

import "sync"

// SigmaLogsource is a Sigma rule's logsource: product, category, service.
type SigmaLogsource struct {
	Product, Category, Service string
}

// sigmaTable is one entry of the generated catalog (sigma_catalog_gen.go).
type sigmaTable struct {
	Name       string
	Base       string // core table it extends, or ""
	Logsources []SigmaLogsource
	Fields     map[string]string // Sigma field -> column
	Columns    []Column          // columns beyond Common and the base's
}

var (
	sigmaOnce   sync.Once
	sigmaTables []Table
	sigmaByLS   map[SigmaLogsource]int
	sigmaByName map[string]int
)

func buildSigma() {
	sigmaByLS = map[SigmaLogsource]int{}
	sigmaByName = map[string]int{}
	seen := map[string]bool{}
	add := func(t Table) int {
		sigmaTables = append(sigmaTables, t)
		sigmaByName[t.Name] = len(sigmaTables) - 1
		return len(sigmaTables) - 1
	}
	for _, st := range sigmaCatalog {
		t := Table{Name: st.Name, Description: "Sigma logsource table", Fields: map[string]string{}}
		if base, ok := Lookup(st.Base); ok && st.Base != "" {
			t.Description = base.Description + ", with the columns Sigma rules use"
			t.Columns = append(t.Columns, base.Columns...)
			for f, c := range base.Fields {
				t.Fields[f] = c
			}
		}
		t.Columns = append(t.Columns, st.Columns...)
		for f, c := range st.Fields {
			t.Fields[f] = c
		}
		i := add(t)
		seen[t.Name] = true
		for _, ls := range st.Logsources {
			sigmaByLS[ls] = i
		}
	}
	// Core tables no corpus rule uses still compile.
	for _, t := range tables {
		if !seen[t.Name] {
			add(t)
		}
	}
}

// SigmaTables returns the tables detect/sigma compiles Sigma rules
// against: the core tables extended with the columns Sigma rules use
// (for example Windows process fields), and one table per other
// logsource of the SigmaHQ corpus. Stores create them when they run the
// full Sigma rule set; the core Tables are a subset in name and columns.
func SigmaTables() []Table {
	sigmaOnce.Do(buildSigma)
	return sigmaTables
}

// SigmaLookup finds the table for a Sigma logsource: the exact logsource
// first, then the table named by its category.
func SigmaLookup(ls SigmaLogsource) (Table, bool) {
	sigmaOnce.Do(buildSigma)
	if i, ok := sigmaByLS[ls]; ok {
		return sigmaTables[i], true
	}
	if ls.Category != "" {
		if i, ok := sigmaByName[ls.Category]; ok {
			return sigmaTables[i], true
		}
	}
	return Table{}, false
}
