package detect

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store"
)

// runCorrelation runs a correlation rule when any table it reads has new
// events, over the events since the oldest new one minus the rule's
// lookback. Hits seen by an earlier run can come back; the state keeps
// one alert per (rule, trigger event), which makes that harmless. Every event past the
// threshold is a hit; one alert per group and timespan is raised: at the
// first hit, and again at the first hit more than a timespan later.
func (e *Engine) runCorrelation(ctx context.Context, c *compiled, head func(string) int64) (int, int, error) {
	heads := map[string]int64{}
	fresh := false
	var oldest time.Time // earliest event_time among the new events
	for _, t := range c.corr.Tables {
		h := head(t)
		wm, err := e.opts.State.Watermark(ctx, c.rule.ID, t)
		if err != nil {
			return 0, 0, fmt.Errorf("reading watermark of rule %s: %w", c.rule.ID, err)
		}
		heads[t] = h
		if h <= wm {
			continue
		}
		fresh = true
		rows, err := e.opts.Querier.Query(ctx, "SELECT min("+store.ColEventTime+") FROM "+e.dialect.Ident(t)+
			" WHERE "+store.ColSeq+" > ? AND "+store.ColSeq+" <= ?", wm, h)
		if err != nil {
			return 0, 0, &queryError{err}
		}
		if len(rows.Rows) == 1 && len(rows.Rows[0]) == 1 {
			if tm, ok := rows.Rows[0][0].(time.Time); ok && (oldest.IsZero() || tm.Before(oldest)) {
				oldest = tm
			}
		}
	}
	if !fresh {
		return 0, 0, nil
	}
	// Read only the history the windows ending at the new events need.
	query, args := c.corr.SQL, []any(nil)
	if !oldest.IsZero() {
		query = c.corr.BoundedSQL
		since := oldest.Add(-c.corr.Lookback)
		for range c.corr.BoundParams {
			args = append(args, since)
		}
	}
	rows, err := e.opts.Querier.Query(ctx, query, args...)
	if err != nil {
		return 0, 0, &queryError{err}
	}
	if rows.Truncated {
		e.log.Warn("correlation hits truncated by the store's row limit", "rule_id", c.rule.ID, "rows", len(rows.Rows))
	}
	table := ""
	if len(c.corr.Tables) == 1 {
		table = c.corr.Tables[0]
	}
	now := e.opts.Now().UTC()
	var alerts []vigil.Alert
	lastAlert := map[string]time.Time{} // group -> time of its last alert
	for _, m := range rows.Maps() {
		var key strings.Builder
		for i := range c.corr.GroupBy {
			fmt.Fprintf(&key, "%v\x00", m[fmt.Sprintf("group_%d", i+1)])
		}
		at, _ := m[store.ColEventTime].(time.Time)
		if last, ok := lastAlert[key.String()]; ok && at.Sub(last) <= c.corr.Timespan {
			continue
		}
		lastAlert[key.String()] = at
		fields := map[string]any{"correlation_value": m["value"], "correlation_tables": strings.Join(c.corr.Tables, ",")}
		for i, g := range c.corr.GroupBy {
			fields[g] = m[fmt.Sprintf("group_%d", i+1)]
		}
		a := vigil.Alert{
			RuleID: c.rule.ID, RuleTitle: c.rule.Title, Level: c.rule.Level,
			EventTable: table, CreatedAt: now, Status: vigil.AlertOpen, Fields: fields,
		}
		a.HostID, _ = m[store.ColHostID].(string)
		a.Hostname, _ = m[store.ColHostname].(string)
		a.EventID, _ = m[store.ColEventID].(string)
		if t, ok := m[store.ColEventTime].(time.Time); ok {
			a.EventTime = t.UTC()
		}
		alerts = append(alerts, a)
	}
	total := 0
	for i, t := range c.corr.Tables {
		batch := alerts
		if i > 0 {
			batch = nil // the alerts go with the first table's watermark
		}
		n, err := e.commit(ctx, c, t, heads[t], batch, c.corr.GroupBy)
		if err != nil {
			return total, len(alerts), fmt.Errorf("committing alerts of rule %s: %w", c.rule.ID, err)
		}
		total += n
	}
	return total, len(alerts), nil
}
