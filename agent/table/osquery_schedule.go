package table

var osquerySchedule = &tableDef{schema: osqueryScheduleSchema, gen: genOsquerySchedule}

// osqueryScheduleSchema is specs/utility/osquery_schedule.table (Linux columns).
var osqueryScheduleSchema = Schema{
	Name:        "osquery_schedule",
	Description: "Information about the current queries that are scheduled in osquery.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "query", Type: TypeText},
		{Name: "interval", Type: TypeInteger},
		{Name: "executions", Type: TypeBigint},
		{Name: "last_executed", Type: TypeBigint},
		{Name: "denylisted", Type: TypeInteger},
		{Name: "output_size", Type: TypeBigint},
		{Name: "wall_time", Type: TypeBigint},
		{Name: "wall_time_ms", Type: TypeBigint},
		{Name: "last_wall_time_ms", Type: TypeBigint},
		{Name: "user_time", Type: TypeBigint},
		{Name: "last_user_time", Type: TypeBigint},
		{Name: "system_time", Type: TypeBigint},
		{Name: "last_system_time", Type: TypeBigint},
		{Name: "average_memory", Type: TypeBigint},
		{Name: "last_memory", Type: TypeBigint},
	},
}

// genOsquerySchedule lists the agent's scheduled queries and their run
// statistics, as reported by Options.Info.
func genOsquerySchedule(q *queryCtx) ([]Row, error) {
	if q.e.opts.Info == nil {
		return nil, nil
	}
	var rows []Row
	for _, s := range q.e.opts.Info().Schedule {
		rows = append(rows, Row{
			"name": s.Name, "query": s.Query, "interval": s.Interval,
			"executions": s.Executions, "last_executed": s.LastExecuted, "denylisted": s.Denylisted,
			"output_size": s.Output, "wall_time": s.WallTimeMs / 1000, "wall_time_ms": s.WallTimeMs,
			"last_wall_time_ms": s.LastWallTimeMs, "user_time": s.UserTime, "last_user_time": s.LastUserTime,
			"system_time": s.SystemTime, "last_system_time": s.LastSystemTime,
			"average_memory": s.AverageMemory, "last_memory": s.LastMemory,
		})
	}
	return rows, nil
}
