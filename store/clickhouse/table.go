package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/schema"
	"github.com/vigilhq/vigil/store"
)

// table is one table of the store.
type table struct {
	name    string
	cols    []schema.Column
	types   []string // ClickHouse type of each column
	index   map[string]int
	common  []bool
	colList string // `a`, `b`, ... for INSERT

	seq      int64 // highest seq assigned; guarded by Store.mu
	seqKnown bool  // false after a failed insert: re-read before the next
}

func newTable(name string, cols []schema.Column) *table {
	t := &table{name: name, cols: cols, index: map[string]int{}, common: make([]bool, len(cols))}
	isCommon := map[string]bool{}
	for _, c := range schema.Common {
		isCommon[c.Name] = true
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		t.index[c.Name] = i
		t.common[i] = isCommon[c.Name]
		t.types = append(t.types, chType(c))
		names[i] = ident(c.Name)
	}
	t.colList = strings.Join(names, ", ")
	return t
}

// chType maps a schema column to its ClickHouse type. The common columns
// that key and order the table are not Nullable (18.16 does not allow
// Nullable in the sorting key); every other column is.
func chType(c schema.Column) string {
	switch c.Name {
	case store.ColEventID, store.ColHostID:
		return "String"
	case store.ColEventTime, store.ColIngestedAt:
		return "DateTime('UTC')"
	case store.ColSeq:
		return "Int64"
	}
	var base string
	switch c.Type {
	case schema.Text:
		base = "String"
	case schema.BigInt:
		base = "Int64"
	case schema.Double:
		base = "Float64"
	case schema.Bool:
		base = "UInt8"
	case schema.Timestamp:
		base = "DateTime('UTC')"
	default:
		panic("clickhouse: no type for schema type " + string(c.Type))
	}
	return "Nullable(" + base + ")"
}

// ensure creates the table or adds the columns a newer schema has, and
// loads the highest seq.
func (s *Store) ensure(ctx context.Context, t *table) error {
	defs := make([]string, len(t.cols))
	for i, c := range t.cols {
		defs[i] = ident(c.Name) + " " + t.types[i]
	}
	// Sorted by hour of event_time, then seq: the duplicate check and
	// people's queries select a time range, which the primary key prunes
	// to its hours; detection reads "seq > watermark", which the key prunes
	// too because new rows (high seq) sit in recent hours and every older
	// hour's granules end below the watermark. Monthly partitions make
	// retention cheap.
	ddl := "CREATE TABLE IF NOT EXISTS " + s.qualified(t.name) + " (" + strings.Join(defs, ", ") +
		") ENGINE = MergeTree() PARTITION BY toYYYYMM(event_time) ORDER BY (toStartOfHour(event_time), seq)"
	if err := s.exec(ctx, ddl); err != nil {
		return fmt.Errorf("creating %s: %w", t.name, err)
	}
	q, err := Bind("SELECT name, type FROM system.columns WHERE database = ? AND table = ?", s.opts.Database, t.name)
	if err != nil {
		return err
	}
	r, err := s.query(ctx, q, 10_000, false)
	if err != nil {
		return fmt.Errorf("reading columns of %s: %w", t.name, err)
	}
	have := map[string]string{}
	for _, row := range r.Rows {
		n, _ := row[0].(string)
		typ, _ := row[1].(string)
		have[n] = typ
	}
	for i, c := range t.cols {
		typ, ok := have[c.Name]
		if !ok {
			if err := s.exec(ctx, "ALTER TABLE "+s.qualified(t.name)+" ADD COLUMN "+ident(c.Name)+" "+t.types[i]); err != nil {
				return fmt.Errorf("adding column %s.%s: %w", t.name, c.Name, err)
			}
			continue
		}
		if typ != t.types[i] {
			return fmt.Errorf("column %s.%s is %s in the database, %s in the schema: a migration is missing", t.name, c.Name, typ, t.types[i])
		}
	}
	return s.loadSeq(ctx, t)
}

// loadSeq reads the highest seq of t: the table's, or the one recorded
// before retention deleted the newest rows.
func (s *Store) loadSeq(ctx context.Context, t *table) error {
	r, err := s.query(ctx, "SELECT max(seq) FROM "+s.qualified(t.name), 1, false)
	if err != nil {
		return fmt.Errorf("reading max seq of %s: %w", t.name, err)
	}
	n, _ := r.Rows[0][0].(int64)
	m, err := s.metaInt(ctx, seqKey(t.name))
	if err != nil {
		return err
	}
	t.seq = max(n, m)
	t.seqKnown = true
	return nil
}

func seqKey(table string) string { return "seq:" + table }

// TabSeparated encoding of values.

func appendTSVString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case 0:
			b = append(b, '\\', '0')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendTSV appends one value, already coerced by store.Coerce.
func appendTSV(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, '\\', 'N')
	case string:
		return appendTSVString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		if x {
			return append(b, '1')
		}
		return append(b, '0')
	case time.Time:
		return x.UTC().AppendFormat(b, dateTimeLayout)
	}
	panic(fmt.Sprintf("clickhouse: no TSV encoding for %T", v))
}

// unescapeTSV undoes ClickHouse's TabSeparated escaping of one field.
func unescapeTSV(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
