package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Event rows wait in the in-memory event buffer until the scheduled queries
// that read their table run. On a clean stop (context cancelled, SIGTERM)
// Run stops the event sources, then runs every scheduled event query one
// last time (flushEvents) so that their rows reach the spool, and only then
// ships the spool. An unclean stop (kill -9, crash, power loss) loses what
// was buffered and not yet given to every query. The scheduler writes, at
// most once a second and only when it changes, a checkpoint of how many
// rows that is per table (DataDir/event_checkpoint.json); the next start
// reports it as lost (a WARNING status line and the "event_shutdown" row of
// vigil_event_drops). Rows that arrived after the last checkpoint are not
// counted.

// checkpointFile holds the undelivered event rows at the last checkpoint.
const checkpointFile = "event_checkpoint.json"

type eventCheckpoint struct {
	Time        time.Time         `json:"time"`
	Undelivered map[string]uint64 `json:"undelivered"`
}

// addedCounts returns each event table's Added counter.
func (s *scheduler) addedCounts() map[string]uint64 {
	out := map[string]uint64{}
	for _, st := range s.a.events.Stats() {
		out[st.Table] = st.Added
	}
	return out
}

// markDelivered records that query name was given the rows of tables
// that were added before its run started (before).
func (s *scheduler) markDelivered(name string, tables []string, before map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.delivered[name]
	if m == nil {
		m = map[string]uint64{}
		s.delivered[name] = m
	}
	for _, t := range tables {
		m[t] = before[t]
	}
}

// undelivered returns, for each event table a scheduled query reads, an
// upper bound on the buffered rows that some such query has not been given
// yet: rows added since the start of the oldest last run, at most the rows
// buffered. Queries skipped on this host do not count; denylisted ones do
// (their rows wait for them).
func (s *scheduler) undelivered() map[string]uint64 {
	stats := s.a.events.Stats()
	s.mu.Lock()
	base := map[string]uint64{}
	for _, sq := range s.queries {
		if sq.skip != "" {
			continue
		}
		for _, t := range sq.evTabs {
			d := s.delivered[sq.q.Name][t]
			if b, ok := base[t]; !ok || d < b {
				base[t] = d
			}
		}
	}
	s.mu.Unlock()
	out := map[string]uint64{}
	for _, st := range stats {
		b, ok := base[st.Table]
		if !ok || st.Added <= b {
			continue
		}
		if n := min(st.Added-b, uint64(max(st.Buffered, 0))); n > 0 {
			out[st.Table] = n
		}
	}
	return out
}

// checkpoint writes the undelivered counts when they changed. No fsync: a
// checkpoint lost with the page cache only loses the count.
func (s *scheduler) checkpoint() {
	u := s.undelivered()
	if maps.Equal(u, s.checkpointed) {
		return
	}
	path := filepath.Join(s.a.opts.DataDir, checkpointFile)
	if len(u) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.a.baseLog.Warn("removing event checkpoint", "err", err)
			return
		}
		s.checkpointed = u
		return
	}
	b, _ := json.Marshal(eventCheckpoint{Time: s.a.opts.Now().UTC(), Undelivered: u})
	if err := replaceFile(path, b, 0o600, false); err != nil {
		s.a.baseLog.Warn("writing event checkpoint", "err", err)
		return
	}
	s.checkpointed = u
}

// flushEvents runs every scheduled event query that may run once more, so
// that rows still buffered at a clean stop are logged. Each row still goes
// to each query once: the queries' cursors carry on.
func (s *scheduler) flushEvents(ctx context.Context) {
	now := s.a.opts.Now()
	s.mu.Lock()
	qs := slices.Clone(s.queries)
	s.mu.Unlock()
	for _, sq := range qs {
		s.mu.Lock()
		run := sq.skip == "" && len(sq.evTabs) > 0 && !sq.deniedUntil.After(now)
		s.mu.Unlock()
		if run && ctx.Err() == nil {
			s.runQuery(ctx, sq)
		}
	}
}

// finishEvents is the last step of a clean stop, after flushEvents: rows
// that still could not be delivered (a denylisted or failing query) are
// counted and reported, and the checkpoint is removed so that the next
// start does not count them again.
func (a *Agent) finishEvents() {
	if u := a.sched.undelivered(); len(u) > 0 {
		total := sumCounts(u)
		a.shutdownLost.Add(total)
		a.log.Warn("event rows still buffered at shutdown were not delivered to every scheduled query",
			"rows", total, "tables", formatCounts(u))
	}
	path := filepath.Join(a.opts.DataDir, checkpointFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.baseLog.Warn("removing event checkpoint", "err", err)
	}
}

// reportUncleanStop counts and reports the rows a previous run lost when it
// stopped without a clean shutdown, from its last checkpoint.
func (a *Agent) reportUncleanStop() {
	path := filepath.Join(a.opts.DataDir, checkpointFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var cp eventCheckpoint
	if err == nil {
		err = json.Unmarshal(b, &cp)
	}
	if err != nil {
		a.log.Warn("previous run stopped without a clean shutdown; its event checkpoint is unreadable, lost event rows are not counted",
			"path", path, "err", err)
	} else if total := sumCounts(cp.Undelivered); total > 0 {
		a.shutdownLost.Add(total)
		a.log.Warn("previous run stopped without a clean shutdown: buffered event rows were lost (count as of its last checkpoint; rows that arrived after it are not counted)",
			"rows_up_to", total, "tables", formatCounts(cp.Undelivered), "checkpoint", cp.Time.Format(time.RFC3339))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.baseLog.Warn("removing event checkpoint", "err", err)
	}
}

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func formatCounts(m map[string]uint64) string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}
