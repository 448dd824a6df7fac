package agent

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/agent/table"
	"github.com/vigilhq/vigil/osquery"
)

// schedQuery is a scheduled query with its run state.
type schedQuery struct {
	q     query
	next  time.Time
	stats table.ScheduleInfo
	// skip is why the query does not run on this host ("" = it runs).
	skip string
	// deniedUntil is set by the watchdog (and restored from the persisted
	// denylist).
	deniedUntil time.Time
	// evTabs are the event tables the query reads; eventOnly is set when it
	// reads nothing else.
	evTabs    []string
	eventOnly bool
	// state caches the persisted differential state (loaded once).
	state  *queryState
	loaded bool
}

// scheduler runs the schedule: one query at a time, as osquery does.
type scheduler struct {
	a     *Agent
	store diffStore

	mu       sync.Mutex
	queries  []*schedQuery
	wake     chan struct{}
	loadDec  map[string]string
	intDec   map[string]map[string]string // interval -> decorations
	intDecAt map[string]time.Time
	evTables map[string]bool // table name -> is an event table
	wd       *watchdog
	denied   *denylist
	// delivered[query][table] is the event table's Added count before the
	// query's last successful run: rows up to it were given to the query.
	delivered map[string]map[string]uint64
	// checkpointed is the last undelivered-rows checkpoint written.
	checkpointed map[string]uint64
}

func newScheduler(a *Agent) *scheduler {
	d, err := loadDenylist(filepath.Join(a.opts.DataDir, "denylist.json"))
	if err != nil {
		a.log.Warn("watchdog: the persisted denylist is unreadable; starting with an empty one", "err", err)
	}
	return &scheduler{
		a:         a,
		store:     diffStore{dir: filepath.Join(a.opts.DataDir, "results")},
		wake:      make(chan struct{}, 1),
		denied:    d,
		delivered: map[string]map[string]uint64{},
	}
}

// setConfig installs a new schedule. Queries keep their run state when
// their name and SQL are unchanged. Pack discovery and load decorators run
// here.
func (s *scheduler) setConfig(ctx context.Context, c *agentConfig) {
	discovery := map[string]bool{} // discovery SQL -> passed
	var qs []*schedQuery
	persisted := make([]time.Time, 0, len(c.Queries)) // denylisted until, from denylist.json
	now := s.a.opts.Now()
	for _, q := range c.Queries {
		sq := &schedQuery{q: q, next: now}
		sq.skip = s.skipReason(q)
		sq.evTabs, sq.eventOnly = s.queryTables(q.SQL)
		persisted = append(persisted, s.denied.until(q.Name, q.SQL, now))
		for _, d := range q.Discovery {
			ok, seen := discovery[d]
			if !seen {
				res, err := s.a.engine.Query(ctx, d)
				ok = err == nil && len(res.Rows) > 0
				discovery[d] = ok
			}
			if !ok && sq.skip == "" {
				sq.skip = "pack discovery query returned no rows"
			}
		}
		qs = append(qs, sq)
	}
	loadDec := map[string]string{}
	intDec := map[string]map[string]string{}
	if c.Decorators != nil {
		s.decorate(ctx, c.Decorators.Load, loadDec)
		for iv, list := range c.Decorators.Interval {
			n, err := strconv.Atoi(iv)
			if err != nil || n <= 0 || n%60 != 0 {
				s.a.log.Warn("decorator interval must be a multiple of 60 seconds; ignored", "interval", iv)
				continue
			}
			m := map[string]string{}
			s.decorate(ctx, list, m)
			intDec[iv] = m
		}
	}
	s.mu.Lock()
	// The run state is copied here, under the lock and at the moment the
	// new schedule is installed: the scheduler (stats, state) and the
	// watchdog (deniedUntil) write it under the same lock, and an update
	// to an old entry after this point reaches the new one too (update).
	old := make(map[string]*schedQuery, len(s.queries))
	for _, sq := range s.queries {
		old[sq.q.Name] = sq
	}
	keep := make(map[string]bool, len(qs))
	for i, sq := range qs {
		q := sq.q
		keep[q.Name] = true
		if o := old[q.Name]; o != nil && o.q.SQL == q.SQL {
			sq.stats, sq.deniedUntil = o.stats, o.deniedUntil
			sq.state, sq.loaded = o.state, o.loaded
			sq.next = o.next
			if q.Interval < o.q.Interval && now.Add(q.Interval).Before(sq.next) {
				sq.next = now.Add(q.Interval)
			}
		}
		sq.stats.Name, sq.stats.Query, sq.stats.Interval = q.Name, q.SQL, int(q.Interval/time.Second)
		if persisted[i].After(sq.deniedUntil) {
			sq.deniedUntil = persisted[i]
		}
	}
	// Event rows a removed query was not given no longer wait for it.
	for name := range s.delivered {
		if !keep[name] {
			delete(s.delivered, name)
		}
	}
	s.queries = qs
	s.loadDec, s.intDec, s.intDecAt = loadDec, intDec, map[string]time.Time{}
	for iv := range intDec {
		s.intDecAt[iv] = now
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// update applies f, under s.mu, to sq and to the entry of the current
// schedule that replaced it (same name and SQL) if a config reload did: a
// run or a watchdog trip of the old entry must not be lost.
func (s *scheduler) update(sq *schedQuery, f func(*schedQuery)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(sq)
	for _, cur := range s.queries {
		if cur != sq && cur.q.Name == sq.q.Name && cur.q.SQL == sq.q.SQL {
			f(cur)
		}
	}
}

// skipReason applies osquery's platform and shard selectors.
func (s *scheduler) skipReason(q query) string {
	if q.Platform != "" {
		ok := false
		for _, p := range strings.Split(q.Platform, ",") {
			switch strings.TrimSpace(strings.ToLower(p)) {
			case "all", "any", buildPlatform():
				ok = true
			case "posix":
				ok = ok || buildPlatform() != "windows"
			case "ubuntu", "centos":
				ok = ok || buildPlatform() == "linux"
			}
		}
		if !ok {
			return "platform " + q.Platform
		}
	}
	if q.Shard > 0 && q.Shard < 100 {
		sum := sha1.Sum([]byte(s.a.hostID))
		if int(binary.BigEndian.Uint16(sum[:2])%100) >= q.Shard {
			return "shard " + strconv.Itoa(q.Shard)
		}
	}
	return ""
}

// decorate runs decorator queries and merges their first row into into.
func (s *scheduler) decorate(ctx context.Context, sqls []string, into map[string]string) {
	for _, d := range sqls {
		res, err := s.a.engine.Query(ctx, d)
		if err != nil {
			s.a.log.Warn("decorator query failed", "query", d, "err", err)
			continue
		}
		if len(res.Rows) > 1 {
			s.a.log.Warn("decorator query returned more than one row; using the first", "query", d)
		}
		if len(res.Rows) > 0 {
			for k, v := range res.Rows[0] {
				into[k] = v
			}
		}
	}
}

// decorations returns the load and interval decorations (no queries run).
func (s *scheduler) decorations() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.loadDec) == 0 && len(s.intDec) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.loadDec))
	for k, v := range s.loadDec {
		out[k] = v
	}
	ivs := make([]string, 0, len(s.intDec))
	for iv := range s.intDec {
		ivs = append(ivs, iv)
	}
	sort.Strings(ivs)
	for _, iv := range ivs {
		for k, v := range s.intDec[iv] {
			out[k] = v
		}
	}
	return out
}

// info is the osquery_schedule view.
func (s *scheduler) info() []table.ScheduleInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]table.ScheduleInfo, 0, len(s.queries))
	for _, sq := range s.queries {
		st := sq.stats
		if sq.deniedUntil.After(s.a.opts.Now()) {
			st.Denylisted = 1
		}
		out = append(out, st)
	}
	return out
}

// run executes due queries until ctx is done.
func (s *scheduler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.runDue(ctx)
		s.checkpoint()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

func (s *scheduler) runDue(ctx context.Context) {
	now := s.a.opts.Now()
	s.refreshIntervalDecorators(ctx, now)
	s.mu.Lock()
	var due []*schedQuery
	for _, sq := range s.queries {
		if sq.skip == "" && !now.Before(sq.next) {
			due = append(due, sq)
		}
	}
	s.mu.Unlock()
	for _, sq := range due {
		if ctx.Err() != nil {
			return
		}
		var denied bool
		s.update(sq, func(e *schedQuery) {
			e.next = now.Add(e.q.Interval)
			denied = denied || e.deniedUntil.After(now)
		})
		if denied {
			continue
		}
		s.runQuery(ctx, sq)
	}
}

func (s *scheduler) refreshIntervalDecorators(ctx context.Context, now time.Time) {
	c := s.a.currentConfig()
	if c == nil || c.Decorators == nil {
		return
	}
	for iv, list := range c.Decorators.Interval {
		s.mu.Lock()
		at, ok := s.intDecAt[iv]
		s.mu.Unlock()
		n, _ := strconv.Atoi(iv)
		if !ok || now.Sub(at) < time.Duration(n)*time.Second {
			continue
		}
		m := map[string]string{}
		s.decorate(ctx, list, m)
		s.mu.Lock()
		s.intDec[iv], s.intDecAt[iv] = m, now
		s.mu.Unlock()
	}
}

// queryTables returns the event tables sql reads and whether every table it
// reads is an event table (osquery's "entirely event-based" queries, which
// the watchdog does not denylist unless events_enforce_denylist is set).
// Queries reading an event table run with QueryAs so that each event row is
// logged once. Table names are found by their tokens, so a name in a string
// literal counts too: the worst case is a query run with QueryAs for
// nothing.
func (s *scheduler) queryTables(sql string) (events []string, eventOnly bool) {
	s.mu.Lock()
	if s.evTables == nil {
		s.evTables = map[string]bool{}
		for _, t := range s.a.engine.Tables() {
			s.evTables[t.Name] = t.Event
		}
	}
	all := s.evTables
	s.mu.Unlock()
	others := false
	seen := map[string]bool{}
	for _, tok := range strings.FieldsFunc(strings.ToLower(sql), func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		ev, isTable := all[tok]
		switch {
		case !isTable:
		case ev && !seen[tok]:
			seen[tok] = true
			events = append(events, tok)
		case !ev:
			others = true
		}
	}
	sort.Strings(events)
	return events, len(events) > 0 && !others
}

// mayDeny reports whether the watchdog may denylist sq: not with
// "denylist": false, nor (unless events_enforce_denylist) when it reads
// only event tables, as osquery.
func (s *scheduler) mayDeny(sq *schedQuery, l wdLimits) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sq.q.Denylist && (!sq.eventOnly || l.enforceEvents)
}

// deny denylists sq until the given time and persists it.
func (s *scheduler) deny(sq *schedQuery, until time.Time, reason string) {
	s.update(sq, func(q *schedQuery) { q.deniedUntil = until })
	if err := s.denied.add(sq.q.Name, sq.q.SQL, until, reason, s.a.opts.Now()); err != nil {
		s.a.log.Warn("watchdog: persisting the denylist failed; it lasts until the agent restarts", "err", err)
	}
}

// MinScheduleMaxResultBytes is the least default bound on a scheduled
// query's result (see scheduleMaxResultBytes).
const MinScheduleMaxResultBytes = 64 << 20

// scheduleMaxResultBytes bounds a scheduled query's result, in bytes of
// JSON as table.WithMaxResultBytes counts them (0 = no bound). osquery has
// no such bound: its watchdog's memory limit stops a query that holds too
// much, and so does the agent's (every check interval during the run, and
// at its end). This bound is the backstop for a query that grows faster
// than the checks: half the watchdog memory limit, at least
// MinScheduleMaxResultBytes, so that even the restrictive level (100 MB)
// logs a full deb_package_files (~15.5 MB). Rows held as Go maps take from
// about their JSON size (wide rows) to 4-7 times it (narrow rows), so a
// result near the bound has usually put the agent over the memory limit
// already and the watchdog, not this bound, decides. With the watchdog
// disabled there is no bound, as in osquery. The config's
// schedule_max_result_bytes (a Vigil option; osquery has none) sets it
// explicitly. It is separate from distributed_max_result_bytes, which
// bounds one distributed/write body (8 MiB), far below what a scheduled
// inventory may legitimately return.
func (a *Agent) scheduleMaxResultBytes() int {
	if n, ok := a.currentConfig().intOption("schedule_max_result_bytes"); ok && n > 0 {
		return int(min(n, math.MaxInt))
	}
	l := a.watchdogLimits()
	if !l.enabled {
		return 0
	}
	return int(min(max(MinScheduleMaxResultBytes, l.memBytes/2), math.MaxInt))
}

// onThread runs f on a goroutine locked to its OS thread, so that the
// thread's CPU clock measures f alone.
func onThread(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		f()
	}()
	<-done
}

// runQuery runs one scheduled query, spools its result lines durably, then
// saves its state: a crash in between re-sends rather than loses. The query
// runs on its own OS thread, measured by the watchdog, and its result is
// bounded (scheduleMaxResultBytes).
func (s *scheduler) runQuery(ctx context.Context, sq *schedQuery) {
	q := sq.q
	s.mu.Lock()
	evTabs := sq.evTabs
	s.mu.Unlock()
	kind := kindDiff
	switch {
	case q.Snapshot:
		kind = kindSnapshot
	case len(evTabs) > 0:
		kind = kindEvent
	}
	var before map[string]uint64
	if kind == kindEvent {
		before = s.addedCounts()
	}
	maxBytes := s.a.scheduleMaxResultBytes()
	qctx, cancel := context.WithCancel(table.WithMaxResultBytes(ctx, maxBytes))
	defer cancel()
	var (
		res       table.Result
		err       error
		user, sys time.Duration
		tripped   string
	)
	start := time.Now()
	onThread(func() {
		u0, s0 := threadRusage()
		var run *queryRun
		if s.wd != nil {
			run = s.wd.begin(sq, cancel)
		}
		if kind == kindEvent {
			res, err = s.a.engine.QueryAs(qctx, q.Name, q.SQL)
		} else {
			res, err = s.a.engine.Query(qctx, q.SQL)
		}
		if run != nil {
			tripped = s.wd.end(run)
		}
		u1, s1 := threadRusage()
		user, sys = u1-u0, s1-s0
	})
	wall := time.Since(start)
	now := s.a.opts.Now()
	rss := residentBytes()
	s.update(sq, func(sq *schedQuery) {
		sq.stats.Executions++
		sq.stats.LastExecuted = now.Unix()
		sq.stats.WallTimeMs += wall.Milliseconds()
		sq.stats.UserTime += user.Milliseconds()
		sq.stats.SystemTime += sys.Milliseconds()
		sq.stats.AverageMemory = rss
	})
	if tripped == "memory" {
		// What a restarted osquery worker would give back; the result
		// (already read) is still logged.
		defer debug.FreeOSMemory()
	}
	if errors.Is(err, table.ErrResultTooLarge) {
		// The differential state is left as it is: it stays the last
		// result logged, so the next run that fits logs every change
		// since then (nothing is lost, nothing logged twice).
		n := s.a.schedTooLarge.Add(1)
		s.a.log.Warn("scheduled query result over schedule_max_result_bytes; nothing logged for this run, its differential state kept",
			"name", q.Name, "max", maxBytes, "too_large_total", n, "err", err)
		return
	}
	if err != nil {
		switch {
		case tripped == "cpu":
			// trip has reported it.
		case ctx.Err() == nil:
			s.a.log.Warn("scheduled query failed", "name", q.Name, "err", err)
		}
		return
	}
	if kind == kindEvent {
		s.markDelivered(q.Name, evTabs, before)
	}
	s.mu.Lock()
	prev, loaded := sq.state, sq.loaded
	s.mu.Unlock()
	if !loaded {
		var err error
		if prev, err = s.store.load(q.Name); err != nil {
			s.a.log.Warn("reading query state", "name", q.Name, "err", err)
		}
		s.update(sq, func(sq *schedQuery) { sq.state, sq.loaded = prev, true })
	}
	epoch, _ := s.a.currentConfig().intOption("schedule_epoch")
	dec := s.decorations()
	if c := s.a.currentConfig(); c != nil && c.Decorators != nil && len(c.Decorators.Always) > 0 {
		if dec == nil {
			dec = map[string]string{}
		}
		s.decorate(ctx, c.Decorators.Always, dec)
	}
	h := lineHeader{name: q.Name, host: s.a.hostID, now: now, epoch: epoch, decorations: dec}
	lines, next := results(kind, h, q.SQL, q.Removed, prev, res.Rows)
	res = table.Result{}
	if len(lines) > 0 {
		n, err := s.a.spoolResults(lines)
		if err != nil {
			s.a.log.Error("spooling results failed; they will be produced again next run", "name", q.Name, "err", err)
			return
		}
		s.update(sq, func(sq *schedQuery) { sq.stats.Output += int64(n) })
	}
	if next != nil {
		s.update(sq, func(sq *schedQuery) { sq.state = next })
		if err := s.store.save(q.Name, next); err != nil {
			s.a.log.Warn("saving query state", "name", q.Name, "err", err)
		}
	}
}

// spoolResults appends result lines to the result spool and makes them
// durable. Lines over logger_tls_max_linesize are dropped, as osquery does,
// with one warning for the call (a run): every status line is synced, so
// one per dropped line would cost a query with many big rows as many
// fsyncs. It returns the bytes spooled.
func (a *Agent) spoolResults(lines []osquery.ResultLine) (int, error) {
	recs := make([][]byte, 0, len(lines))
	total := 0
	maxLine := a.maxLineSize()
	var dropped, largest int
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			return 0, fmt.Errorf("encode result line: %w", err)
		}
		if len(b) > maxLine {
			dropped++
			largest = max(largest, len(b))
			continue
		}
		total += len(b)
		recs = append(recs, b)
	}
	if dropped > 0 {
		n := a.oversizedLines.Add(uint64(dropped))
		a.log.Warn("result lines over logger_tls_max_linesize dropped", "name", lines[0].Name, "lines", dropped,
			"largest_bytes", largest, "max", maxLine, "dropped_total", n)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	if _, err := a.results.Append(recs...); err != nil {
		return 0, err
	}
	if err := a.results.Sync(); err != nil {
		return 0, err
	}
	return total, nil
}
