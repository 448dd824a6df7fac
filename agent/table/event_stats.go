package table

// EventStat describes one event publisher (a source: audit, cn_proc,
// fanotify, inotify), one subscriber (an event table and its buffer) or one
// other place where the agent can lose rows (Type "logger": result lines
// over logger_tls_max_linesize, distributed results over their bound, spool
// overflow). osquery_events shows publishers and subscribers with osquery's
// columns; vigil_event_drops shows every row with every loss counter.
type EventStat struct {
	Name string
	// Publisher is the source feeding a subscriber ("" when none is
	// active); a publisher names itself.
	Publisher string
	// Type is "publisher", "subscriber" or "logger".
	Type string
	// Subscriptions: for a publisher the number of tables it feeds, for a
	// subscriber the number of publishers feeding it (0 or 1).
	Subscriptions int
	// Events emitted (publisher) or added to the buffer (subscriber), or
	// lines written (logger).
	Events    uint64
	Refreshes uint64
	Active    bool
	// Error says why a publisher is not active.
	Error string

	// Source loss counters (agent/event.Stats).
	KernelLost, SocketOverflows, QueueDropped, SequenceGaps, Incomplete, ParseErrors, ProcGone uint64
	// Buffer counters of a subscriber (agent/event.TableStats) or of a
	// spool (BufferDropped: oldest records dropped when full).
	Buffered                     int64
	BufferDropped, BufferExpired uint64
	// TooLarge counts lines or results dropped because they exceeded a
	// size bound.
	TooLarge uint64
}

// Lost sums the counters that mean a row never reached a consumer.
// Incomplete, parse errors and proc_gone rows were delivered with less
// detail; expired rows may have been read before they expired, so neither
// is counted as lost.
func (s EventStat) Lost() uint64 {
	return s.KernelLost + s.SocketOverflows + s.QueueDropped + s.SequenceGaps + s.BufferDropped + s.TooLarge
}

var osqueryEventsTable = &tableDef{schema: osqueryEventsSchema, gen: genOsqueryEvents}

// osqueryEventsSchema is specs/utility/osquery_events.table.
var osqueryEventsSchema = Schema{
	Name:        "osquery_events",
	Description: "Information about the event publishers and subscribers.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "publisher", Type: TypeText},
		{Name: "type", Type: TypeText},
		{Name: "subscriptions", Type: TypeInteger},
		{Name: "events", Type: TypeInteger},
		{Name: "refreshes", Type: TypeInteger},
		{Name: "active", Type: TypeInteger},
	},
}

func genOsqueryEvents(q *queryCtx) ([]Row, error) {
	if q.e.opts.EventStats == nil {
		return nil, nil
	}
	var rows []Row
	for _, s := range q.e.opts.EventStats() {
		if s.Type != "publisher" && s.Type != "subscriber" {
			continue
		}
		rows = append(rows, Row{
			"name": s.Name, "publisher": s.Publisher, "type": s.Type,
			"subscriptions": s.Subscriptions, "events": s.Events, "refreshes": s.Refreshes,
			"active": s.Active,
		})
	}
	return rows, nil
}

// vigilEventDropsTable is Vigil's own table (no osquery spec): one row per
// publisher, subscriber and logger with every counter of what it lost.
var vigilEventDropsTable = &tableDef{schema: vigilEventDropsSchema, gen: genVigilEventDrops}

var vigilEventDropsSchema = Schema{
	Name:        "vigil_event_drops",
	Description: "Vigil: what each event source, event table buffer and logger lost, one counter per cause.",
	Columns: []Column{
		{Name: "name", Type: TypeText},
		{Name: "type", Type: TypeText},
		{Name: "publisher", Type: TypeText},
		{Name: "active", Type: TypeInteger},
		{Name: "error", Type: TypeText},
		{Name: "events", Type: TypeBigint},
		{Name: "lost", Type: TypeBigint},
		{Name: "kernel_lost", Type: TypeBigint},
		{Name: "socket_overflows", Type: TypeBigint},
		{Name: "queue_dropped", Type: TypeBigint},
		{Name: "sequence_gaps", Type: TypeBigint},
		{Name: "incomplete", Type: TypeBigint},
		{Name: "parse_errors", Type: TypeBigint},
		{Name: "proc_gone", Type: TypeBigint},
		{Name: "buffered", Type: TypeBigint},
		{Name: "buffer_dropped", Type: TypeBigint},
		{Name: "buffer_expired", Type: TypeBigint},
		{Name: "too_large", Type: TypeBigint},
	},
}

func genVigilEventDrops(q *queryCtx) ([]Row, error) {
	if q.e.opts.EventStats == nil {
		return nil, nil
	}
	var rows []Row
	for _, s := range q.e.opts.EventStats() {
		rows = append(rows, Row{
			"name": s.Name, "type": s.Type, "publisher": s.Publisher, "active": s.Active, "error": s.Error,
			"events": s.Events, "lost": s.Lost(),
			"kernel_lost": s.KernelLost, "socket_overflows": s.SocketOverflows, "queue_dropped": s.QueueDropped,
			"sequence_gaps": s.SequenceGaps, "incomplete": s.Incomplete, "parse_errors": s.ParseErrors,
			"proc_gone": s.ProcGone, "buffered": s.Buffered, "buffer_dropped": s.BufferDropped,
			"buffer_expired": s.BufferExpired, "too_large": s.TooLarge,
		})
	}
	return rows, nil
}
