package table

var timeTable = &tableDef{schema: timeSchema, gen: genTime}

// timeSchema is specs/utility/time.table (Linux columns).
var timeSchema = Schema{
	Name:        "time",
	Description: "Track current date and time in UTC.",
	Columns: []Column{
		{Name: "weekday", Type: TypeText},
		{Name: "year", Type: TypeInteger},
		{Name: "month", Type: TypeInteger},
		{Name: "day", Type: TypeInteger},
		{Name: "hour", Type: TypeInteger},
		{Name: "minutes", Type: TypeInteger},
		{Name: "seconds", Type: TypeInteger},
		{Name: "timezone", Type: TypeText},
		{Name: "local_timezone", Type: TypeText},
		{Name: "unix_time", Type: TypeInteger},
		{Name: "timestamp", Type: TypeText},
		{Name: "datetime", Type: TypeText},
		{Name: "iso_8601", Type: TypeText},
	},
}

// genTime describes now in UTC (osquery's default --utc), with the host's
// own zone in local_timezone.
func genTime(q *queryCtx) ([]Row, error) {
	now := q.e.opts.Now()
	utc := now.UTC()
	zone, _ := now.Local().Zone()
	if zone == "" {
		zone = "UTC"
	}
	iso := utc.Format("2006-01-02T15:04:05Z")
	return []Row{{
		"weekday":        utc.Weekday().String(),
		"year":           utc.Year(),
		"month":          int(utc.Month()),
		"day":            utc.Day(),
		"hour":           utc.Hour(),
		"minutes":        utc.Minute(),
		"seconds":        utc.Second(),
		"timezone":       "UTC",
		"local_timezone": zone,
		"unix_time":      utc.Unix(),
		"timestamp":      utc.Format("Mon Jan _2 15:04:05 2006 UTC"),
		"datetime":       iso,
		"iso_8601":       iso,
	}}, nil
}
