package table

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"modernc.org/sqlite/vtab"
)

// Row is one generated row: column name to value. Values may be string,
// int, int64, uint64, float64, bool or nil; they are converted to the
// column's declared type the way osquery converts its string rows (a value
// that does not parse as the column's type becomes NULL).
type Row map[string]any

// generator produces the rows of a table for one scan.
type generator func(q *queryCtx) ([]Row, error)

// tableDef is one entry of the registry.
type tableDef struct {
	schema Schema
	gen    generator
	// aliases are other names osquery accepts for the table (table_name's
	// aliases=[...]); each becomes a view.
	aliases []string
}

func (t *tableDef) check() error {
	if t.schema.Name == "" || t.gen == nil {
		return fmt.Errorf("table %q: incomplete definition", t.schema.Name)
	}
	seen := map[string]bool{}
	for _, c := range t.schema.Columns {
		if seen[c.Name] {
			return fmt.Errorf("table %q: column %q declared twice", t.schema.Name, c.Name)
		}
		seen[c.Name] = true
		if sqlType(c.Type) == "" {
			return fmt.Errorf("table %q: column %q has unknown type %q", t.schema.Name, c.Name, c.Type)
		}
		if c.Collate != "" && !knownCollation(c.Collate) {
			return fmt.Errorf("table %q: column %q has unknown collation %q", t.schema.Name, c.Name, c.Collate)
		}
	}
	return nil
}

func sqlType(t string) string {
	switch t {
	case TypeText, TypeInteger, TypeBigint, TypeDouble, TypeDatetime, TypeBlob:
		return t
	case TypeUnsignedBigint:
		return "UNSIGNED BIGINT"
	}
	return ""
}

// declaration is the CREATE TABLE statement given to sqlite3_declare_vtab.
func (t *tableDef) declaration() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE x(")
	for i, c := range t.schema.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q %s", c.Name, sqlType(c.Type))
		if c.Collate != "" {
			b.WriteString(" COLLATE " + c.Collate)
		}
		if c.Hidden {
			b.WriteString(" HIDDEN")
		}
	}
	b.WriteString(")")
	return b.String()
}

// requiredColumns lists the columns of which at least one must be
// constrained.
func (t *tableDef) requiredColumns() []string {
	var out []string
	for _, c := range t.schema.Columns {
		if c.Required {
			out = append(out, c.Name)
		}
	}
	return out
}

func (t *tableDef) missingConstraintError() error {
	req := t.requiredColumns()
	q := make([]string, len(req))
	for i, r := range req {
		q[i] = strconv.Quote(r)
	}
	return fmt.Errorf("table %q requires a constraint on %s", t.schema.Name, strings.Join(q, " or "))
}

// constraint is one WHERE term pushed down to a generator.
type constraint struct {
	col string
	op  vtab.ConstraintOp
	val any
}

// queryCtx is what a generator sees of the query that scans it.
type queryCtx struct {
	ctx   context.Context
	fs    *rootFS
	log   *slog.Logger
	e     *Engine
	s     *session
	table *tableDef
	cons  []constraint
	used  uint64 // bit N: column N is referenced (bit 63: 63 and above)
}

// Err reports whether the query was cancelled; long generators poll it.
func (q *queryCtx) Err() error {
	if q.ctx == nil {
		return nil
	}
	return q.ctx.Err()
}

// Eq returns the values of the = constraints on col, rendered as strings.
func (q *queryCtx) Eq(col string) []string { return q.values(col, vtab.OpEQ) }

// Like returns the patterns of the LIKE constraints on col.
func (q *queryCtx) Like(col string) []string { return q.values(col, vtab.OpLIKE) }

// Glob returns the patterns of the GLOB constraints on col.
func (q *queryCtx) Glob(col string) []string { return q.values(col, vtab.OpGLOB) }

// HasEq reports whether col has an = constraint.
func (q *queryCtx) HasEq(col string) bool { return len(q.Eq(col)) > 0 }

func (q *queryCtx) values(col string, op vtab.ConstraintOp) []string {
	var out []string
	for _, c := range q.cons {
		if c.col == col && c.op == op && c.val != nil {
			out = append(out, render(c.val))
		}
	}
	return out
}

// Used reports whether the query references column col; generators skip
// expensive columns nobody asked for.
func (q *queryCtx) Used(col string) bool {
	for i, c := range q.table.schema.Columns {
		if c.Name == col {
			if i >= 63 {
				return q.used&(1<<63) != 0
			}
			return q.used&(1<<uint(i)) != 0
		}
	}
	return false
}

// module is the single vtab module; the table name selects the definition.
type module struct{ e *Engine }

var _ vtab.Module = (*module)(nil)

func (m *module) Create(ctx vtab.Context, args []string) (vtab.Table, error) {
	return m.Connect(ctx, args)
}

// Connect receives args = module, database, table name, session id.
func (m *module) Connect(ctx vtab.Context, args []string) (vtab.Table, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("vigil module: want a session argument, got %q", args)
	}
	name := strings.Trim(args[2], `"`)
	def := m.e.tables[name]
	if def == nil {
		return nil, fmt.Errorf("vigil module: no table %q", name)
	}
	id, err := strconv.ParseInt(strings.TrimSpace(args[3]), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("vigil module: bad session %q", args[3])
	}
	s := m.e.sessionByID(id)
	if s == nil {
		return nil, fmt.Errorf("vigil module: unknown session %d", id)
	}
	if err := ctx.Declare(def.declaration()); err != nil {
		return nil, fmt.Errorf("declaring %s: %w", name, err)
	}
	return &vtable{e: m.e, def: def, s: s}, nil
}

type vtable struct {
	e   *Engine
	def *tableDef
	s   *session
}

var _ vtab.Table = (*vtable)(nil)

// Plans: idxNum 0 is a normal scan; planMissing marks a plan in which a
// required column is constrained only by a term SQLite cannot hand us here
// (a join order it will reject for its cost).
const planMissing = 1

func pushable(op vtab.ConstraintOp) (string, bool) {
	switch op {
	case vtab.OpEQ:
		return "eq", true
	case vtab.OpLIKE:
		return "like", true
	case vtab.OpGLOB:
		return "glob", true
	case vtab.OpGT:
		return "gt", true
	case vtab.OpGE:
		return "ge", true
	case vtab.OpLT:
		return "lt", true
	case vtab.OpLE:
		return "le", true
	}
	return "", false
}

var opByName = map[string]vtab.ConstraintOp{
	"eq": vtab.OpEQ, "like": vtab.OpLIKE, "glob": vtab.OpGLOB,
	"gt": vtab.OpGT, "ge": vtab.OpGE, "lt": vtab.OpLT, "le": vtab.OpLE,
}

// BestIndex hands every usable comparison to the generator (SQLite still
// re-checks them: nothing is omitted) and prices plans so that constrained
// index or required columns win.
func (t *vtable) BestIndex(info *vtab.IndexInfo) error {
	cols := t.def.schema.Columns
	var parts []string
	arg := 0
	indexed := false
	requiredUsable, requiredSeen := false, false
	for i := range info.Constraints {
		c := &info.Constraints[i]
		if c.Column < 0 || c.Column >= len(cols) {
			continue
		}
		col := cols[c.Column]
		opName, ok := pushable(c.Op)
		if !ok {
			continue
		}
		// =, LIKE and GLOB name paths the generators can expand; a range
		// cannot satisfy a required column.
		isKeyOp := c.Op == vtab.OpEQ || c.Op == vtab.OpLIKE || c.Op == vtab.OpGLOB
		if col.Required && isKeyOp {
			requiredSeen = true
		}
		if !c.Usable {
			continue
		}
		c.ArgIndex = arg
		arg++
		parts = append(parts, strconv.Itoa(c.Column)+":"+opName)
		if col.Required && isKeyOp {
			requiredUsable = true
		}
		if (col.Index || col.Required) && c.Op == vtab.OpEQ {
			indexed = true
		}
	}
	info.IdxStr = strings.Join(parts, ",")
	switch {
	case len(t.def.requiredColumns()) > 0 && !requiredUsable:
		if !requiredSeen {
			return t.def.missingConstraintError()
		}
		info.IdxNum = planMissing
		info.EstimatedCost = math.MaxFloat64 / 4
		info.EstimatedRows = math.MaxInt32
	case indexed || requiredUsable:
		info.EstimatedCost = 10
		info.EstimatedRows = 10
	default:
		info.EstimatedCost = 1e6
		info.EstimatedRows = 1000
	}
	// The column bitmask travels to Filter in IdxStr's prefix.
	info.IdxStr = strconv.FormatUint(info.ColUsed, 16) + ";" + info.IdxStr
	return nil
}

func (t *vtable) Open() (vtab.Cursor, error) { return &cursor{t: t}, nil }
func (t *vtable) Disconnect() error          { return nil }
func (t *vtable) Destroy() error             { return nil }

type cursor struct {
	t    *vtable
	rows []Row
	pos  int
}

var _ vtab.Cursor = (*cursor)(nil)

func (c *cursor) Filter(idxNum int, idxStr string, vals []vtab.Value) error {
	def := c.t.def
	if idxNum == planMissing {
		return def.missingConstraintError()
	}
	usedHex, plan, _ := strings.Cut(idxStr, ";")
	used, _ := strconv.ParseUint(usedHex, 16, 64)
	q := &queryCtx{
		ctx:   c.t.s.ctx,
		fs:    c.t.e.fs,
		log:   c.t.e.log,
		e:     c.t.e,
		s:     c.t.s,
		table: def,
		used:  used,
	}
	if plan != "" {
		for i, p := range strings.Split(plan, ",") {
			colStr, opStr, _ := strings.Cut(p, ":")
			ci, err := strconv.Atoi(colStr)
			if err != nil || ci < 0 || ci >= len(def.schema.Columns) || i >= len(vals) {
				return fmt.Errorf("table %s: bad plan %q", def.schema.Name, idxStr)
			}
			v := vals[i]
			if b, ok := v.([]byte); ok {
				v = string(b) // copy: vals are not valid after Filter
			}
			q.cons = append(q.cons, constraint{col: def.schema.Columns[ci].Name, op: opByName[opStr], val: v})
		}
	}
	if err := q.Err(); err != nil {
		return err
	}
	rows, err := def.gen(q)
	if err != nil {
		return fmt.Errorf("table %s: %w", def.schema.Name, err)
	}
	c.rows, c.pos = rows, 0
	return nil
}

func (c *cursor) Next() error {
	c.pos++
	return nil
}

func (c *cursor) Eof() bool { return c.pos >= len(c.rows) }

func (c *cursor) Column(col int) (vtab.Value, error) {
	cols := c.t.def.schema.Columns
	if col < 0 || col >= len(cols) || c.pos >= len(c.rows) {
		return nil, nil
	}
	return convert(c.rows[c.pos][cols[col].Name], cols[col].Type), nil
}

func (c *cursor) Rowid() (int64, error) { return int64(c.pos), nil }
func (c *cursor) Close() error          { c.rows = nil; return nil }

// convert turns a generated value into the SQLite value osquery would
// produce for a column of type typ.
func convert(v any, typ string) vtab.Value {
	switch typ {
	case TypeText, TypeDatetime:
		switch v := v.(type) {
		case nil:
			return nil
		case string:
			return v
		case uint64:
			return strconv.FormatUint(v, 10)
		default:
			return render(normalize(v))
		}
	case TypeBlob:
		switch v := v.(type) {
		case nil:
			return nil
		case []byte:
			return v
		case string:
			return []byte(v)
		default:
			return []byte(render(normalize(v)))
		}
	case TypeDouble:
		switch v := normalize(v).(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return nil
			}
			return f
		}
		return nil
	default: // INTEGER, BIGINT, UNSIGNED_BIGINT
		switch v := normalize(v).(type) {
		case int64:
			return v
		case float64:
			return int64(v)
		case string:
			s := strings.TrimSpace(v)
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
			if typ == TypeUnsignedBigint {
				if u, err := strconv.ParseUint(s, 10, 64); err == nil {
					return int64(u) // osquery stores the bit pattern
				}
			}
			return nil
		}
		return nil
	}
}

// normalize maps Go numeric kinds onto int64, float64 or string.
func normalize(v any) any {
	switch v := v.(type) {
	case int:
		return int64(v)
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		return int64(v)
	case uint:
		return int64(v)
	case bool:
		if v {
			return int64(1)
		}
		return int64(0)
	case []byte:
		return string(v)
	}
	return v
}
