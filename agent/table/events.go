package table

// Event tables read the rows agent/event buffered. Query returns every
// buffered row; QueryAs returns each row once per consumer (osquery's
// "each row once per scheduled query").

var (
	processEventsTable = eventTable(processEventsSchema)
	socketEventsTable  = eventTable(socketEventsSchema)
	fileEventsTable    = eventTable(fileEventsSchema)
	userEventsTable    = eventTable(userEventsSchema)
)

func eventTable(s Schema) *tableDef {
	return &tableDef{schema: s, gen: func(q *queryCtx) ([]Row, error) {
		src := q.e.eventRows(q.s, s.Name)
		rows := make([]Row, len(src))
		for i, m := range src {
			r := make(Row, len(m))
			for k, v := range m {
				r[k] = v
			}
			rows[i] = r
		}
		return rows, nil
	}}
}
