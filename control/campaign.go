package control

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/state"
)

// Campaign is a live query and its per-host outcome.
type Campaign = state.Campaign

// Target says which hosts a live query goes to: All, or the hosts named
// in Hosts by id, host_identifier or hostname.
type Target struct {
	Hosts []string
	All   bool
}

// Event types of a CampaignEvent.
const (
	EventResult = "result" // a host's rows
	EventStatus = "status" // a host's final status
	EventDone   = "done"   // every host answered, was offline, or timed out
)

// CampaignEvent is one thing that happened in a campaign. Each host gives
// at most one result (when it succeeded) followed by one status; done
// comes last, once.
type CampaignEvent struct {
	Type     string
	HostID   string
	Hostname string
	Rows     []map[string]string // result
	Columns  []string            // result: the rows' column order, when known
	Status   string              // status: ok, error, offline, timeout
	Error    string              // status: why it failed
	Summary  state.Summary       // done
}

// StartCampaign sends sql to the target hosts. Hosts offline at the start
// (no check-in within OfflineAfter) are reported offline at once and are
// not sent the query; the others have QueryTimeout to answer. The start is
// written to the audit log (actor, SQL, targets, source from WithSource)
// in the same transaction as the campaign.
func (s *Server) StartCampaign(ctx context.Context, actor string, sql string, target Target) (Campaign, error) {
	c, _, err := s.startCampaign(ctx, actor, sql, target, false)
	return c, err
}

// StartFollowed is StartCampaign and Subscribe in one: the subscription
// is made before any host can answer, so it replays nothing from the
// state. Subscribing after the start reads back every target while the
// first answers come in, and holds their publishing until it has.
func (s *Server) StartFollowed(ctx context.Context, actor string, sql string, target Target) (Campaign, <-chan CampaignEvent, func(), error) {
	c, sub, err := s.startCampaign(ctx, actor, sql, target, true)
	if err != nil {
		return Campaign{}, nil, nil, err
	}
	return c, sub.ch, s.hub.unsubscribe(c.ID, sub), nil
}

func (s *Server) startCampaign(ctx context.Context, actor string, sql string, target Target, follow bool) (Campaign, *subscriber, error) {
	sql = strings.TrimSpace(sql)
	if sql == "" {
		return Campaign{}, nil, fmt.Errorf("control: the query is empty: %w", vigil.ErrInvalid)
	}
	if len(sql) > MaxSQLBytes {
		return Campaign{}, nil, fmt.Errorf("control: the query is %d bytes, over the %d-byte limit: %w", len(sql), MaxSQLBytes, vigil.ErrInvalid)
	}
	start := time.Now()
	// The drainer waits from here (listing and inserting 10,000 targets
	// competes with it too) until the campaign is created; the campaign
	// keeps the window open if hosts hold a read (openPriority below).
	token := fmt.Sprintf("starting-%d", s.prio.seq.Add(1))
	s.openPriority(token)
	defer s.donePriority(token)
	var hosts []vigil.Host
	var err error
	if target.All {
		hosts, err = s.db.HostTargets(ctx)
	} else {
		var missing []string
		hosts, missing, err = s.db.FindHosts(ctx, target.Hosts)
		if err == nil && len(missing) > 0 {
			return Campaign{}, nil, fmt.Errorf("control: no host matches %q (use a host id, host identifier or hostname): %w",
				strings.Join(missing, `", "`), vigil.ErrInvalid)
		}
	}
	if err != nil {
		return Campaign{}, nil, fmt.Errorf("control: resolving targets: %w", err)
	}
	if len(hosts) == 0 {
		return Campaign{}, nil, fmt.Errorf("control: no target host (name hosts, or all with at least one enrolled): %w", vigil.ErrInvalid)
	}
	listed := time.Now()
	now := s.now()
	c := Campaign{SQL: sql, Actor: actor, CreatedAt: now, Deadline: now.Add(s.opts.QueryTimeout)}
	targets := make([]string, 0, len(hosts))
	for _, h := range hosts {
		ch := state.CampaignHost{HostID: h.ID, Hostname: h.Hostname, Status: state.StatusPending}
		if !s.Online(h) {
			ch.Status, ch.Error = state.StatusOffline, "host offline when the query started"
		}
		c.Hosts = append(c.Hosts, ch)
		targets = append(targets, h.ID)
	}
	audit := &state.AuditEntry{Actor: actor, Action: "query.start", Source: sourceOf(ctx), Time: now,
		Detail: map[string]any{"sql": sql, "hosts": targets, "all": target.All}}
	var sub *subscriber
	if follow {
		// Subscribed before the campaign is committed: every answer,
		// from this replica or another, is published after this.
		c.ID = state.NewID()
		sub = s.hub.subscribe(c)
	}
	id := c.ID
	creating := time.Now()
	c, err = s.db.CreateCampaign(ctx, c, audit)
	created := time.Now()
	if err != nil {
		if sub != nil {
			s.hub.unsubscribe(id, sub)()
		}
		return Campaign{}, nil, fmt.Errorf("control: %w", err)
	}
	if sub != nil && c.Done {
		s.hub.publish(c.ID, CampaignEvent{Type: EventDone, Summary: c.Summary})
	}
	s.stats.campaignsStarted.Add(1)
	if !c.Done {
		s.scheduleDeadline(c.ID, c.Deadline)
	}
	// Hosts whose read is held here get the query from memory when woken;
	// the others claim it from the state (polling, or held elsewhere).
	var pending, held []string
	for _, h := range c.Hosts {
		if h.Status == state.StatusPending {
			pending = append(pending, h.HostID)
			if s.notify.held(h.HostID) {
				held = append(held, h.HostID)
			}
		}
	}
	s.logger.Info("live query started", "campaign", c.ID, "actor", actor, "hosts", len(c.Hosts), "pending", c.Summary.Pending,
		"held", len(held), "setup", time.Since(start).Round(time.Millisecond),
		"listing", listed.Sub(start).Round(time.Millisecond), "creating", created.Sub(creating).Round(time.Millisecond))
	s.local.add(c.ID, c.SQL, c.Deadline, held)
	if len(held) > 0 {
		// Their answers come within moments: give them the cores.
		s.openPriority(c.ID)
	}
	// The others must ask the state at their next read.
	if len(held) < len(pending) {
		isHeld := make(map[string]bool, len(held))
		for _, id := range held {
			isHeld[id] = true
		}
		var claim []string
		for _, id := range pending {
			if !isHeld[id] {
				claim = append(claim, id)
			}
		}
		s.hint.dirty(claim...)
	}
	s.notify.wakeMany(pending)
	// Agents long-polling another replica must hear of it too.
	if err := s.db.Announce(ctx, state.TopicHost, pending...); err != nil {
		s.logger.Error("announcing a live query to replicas; agents there see it at their next poll", "campaign", c.ID, "err", err)
	}
	return c, sub, nil
}

// Subscribe follows a campaign: first what already happened (replayed
// from state), then events as they arrive, and finally done, after which
// the channel is closed. cancel stops following (and closes the channel).
// An unknown campaign gives a closed channel.
func (s *Server) Subscribe(campaignID string) (<-chan CampaignEvent, func()) {
	// The answers recorded so far are written first, outside the lock that
	// publishing answers takes; the read below then waits only for those
	// recorded meanwhile.
	if err := s.db.Settle(context.Background()); err != nil {
		s.logger.Error("waiting for recorded answers before a replay", "campaign", campaignID, "err", err)
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	// Read under the hub lock: a result committed before this read is in
	// the replay, one committed after is published to us; one in between
	// (committed, not yet published) comes twice and sub.send drops it.
	c, err := s.db.GetCampaign(context.Background(), campaignID)
	if err != nil {
		ch := make(chan CampaignEvent)
		close(ch)
		return ch, func() {}
	}
	sub := s.hub.followLocked(c)
	if c.Done {
		return sub.ch, func() {}
	}
	return sub.ch, s.hub.unsubscribe(c.ID, sub)
}

// recordResult stores one host's answer and tells subscribers.
func (s *Server) recordResult(ctx context.Context, campaignID string, h vigil.Host, res state.Result) error {
	recorded, completed, err := s.db.RecordResult(ctx, campaignID, h.ID, res)
	if err != nil {
		return err
	}
	s.local.answered(campaignID, h.ID)
	if !recorded {
		// Unknown id, not a target, already answered or too late.
		s.logger.Debug("distributed result ignored", "campaign", campaignID, "host_id", h.ID)
		return nil
	}
	s.stats.resultsRecorded.Add(1)
	// Up to three events, without allocating: at 10,000 answers a second
	// every allocation here is work for the collector, which the handlers
	// pay for.
	var buf [3]CampaignEvent
	evs := buf[:0]
	if res.Status == state.StatusOK {
		rows := res.Rows
		if rows == nil {
			rows = []map[string]string{}
		}
		evs = append(evs, CampaignEvent{Type: EventResult, HostID: h.ID, Hostname: h.Hostname, Rows: rows, Columns: res.Columns})
	}
	evs = append(evs, CampaignEvent{Type: EventStatus, HostID: h.ID, Hostname: h.Hostname, Status: res.Status, Error: res.Error})
	if completed {
		evs = append(evs, s.doneEvent(ctx, campaignID))
		s.cancelDeadline(campaignID)
		s.local.forget(campaignID)
	}
	s.hub.publish(campaignID, evs...)
	if completed {
		// After done is out: the window's end lets the acknowledgements,
		// the hold ends and the drainer loose, and the followers' writing
		// of done would wait behind thousands of them.
		s.donePriority(campaignID)
	}
	if !s.db.Shared() {
		return nil // no replica to tell
	}
	// Other replicas fetch just this host's answer (campaign/host), and
	// the whole campaign only when it completed.
	ids := []string{campaignID + "/" + h.ID}
	if completed {
		ids = append(ids, campaignID)
	}
	s.announceCampaign(ctx, ids...)
	return nil
}

func (s *Server) announceCampaign(ctx context.Context, ids ...string) {
	if err := s.db.Announce(ctx, state.TopicCampaign, ids...); err != nil {
		s.logger.Error("announcing a campaign change to replicas", "campaigns", ids, "err", err)
	}
}

// onAnnounce handles another replica's announcement: wake a host's held
// distributed/read, or bring local subscribers of a campaign up to date.
// An empty topic means announcements may have been missed: recheck all.
func (s *Server) onAnnounce(topic, id string) {
	switch topic {
	case state.TopicHost:
		s.hint.dirty(id)
		s.notify.wake(id)
	case state.TopicCampaign:
		if cid, hid, ok := strings.Cut(id, "/"); ok {
			s.local.forgetHost(cid, hid) // it answered through another replica
			s.refreshHost(cid, hid)
		} else {
			s.local.forget(id)
			s.refreshCampaign(id)
		}
	case "":
		s.loadHint()
		s.notify.wakeAll()
		s.hub.mu.Lock()
		ids := make([]string, 0, len(s.hub.subs))
		for id := range s.hub.subs {
			ids = append(ids, id)
		}
		s.hub.mu.Unlock()
		for _, id := range ids {
			s.refreshCampaign(id)
		}
	}
}

// refreshCampaign publishes, to this server's subscribers of a campaign,
// whatever another replica recorded; subscribers drop what they already
// have.
func (s *Server) refreshCampaign(id string) {
	s.hub.mu.Lock()
	n := len(s.hub.subs[id])
	s.hub.mu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.db.GetCampaign(ctx, id)
	if err != nil {
		s.logger.Error("refreshing campaign", "campaign", id, "err", err)
		return
	}
	var evs []CampaignEvent
	for _, h := range c.Hosts {
		if !state.FinalStatus(h.Status) {
			continue
		}
		if h.Status == state.StatusOK {
			evs = append(evs, CampaignEvent{Type: EventResult, HostID: h.HostID, Hostname: h.Hostname, Rows: h.Rows, Columns: h.Columns})
		}
		evs = append(evs, CampaignEvent{Type: EventStatus, HostID: h.HostID, Hostname: h.Hostname, Status: h.Status, Error: h.Error})
	}
	if c.Done {
		evs = append(evs, CampaignEvent{Type: EventDone, Summary: c.Summary})
	}
	s.hub.publish(id, evs...)
}

// refreshHost publishes one host's answer recorded by another replica to
// this server's subscribers of the campaign.
func (s *Server) refreshHost(campaignID, hostID string) {
	s.hub.mu.Lock()
	n := len(s.hub.subs[campaignID])
	s.hub.mu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := s.db.CampaignHost(ctx, campaignID, hostID)
	if err != nil {
		s.logger.Error("refreshing a campaign host", "campaign", campaignID, "host_id", hostID, "err", err)
		return
	}
	if !state.FinalStatus(h.Status) {
		return
	}
	var evs []CampaignEvent
	if h.Status == state.StatusOK {
		evs = append(evs, CampaignEvent{Type: EventResult, HostID: h.HostID, Hostname: h.Hostname, Rows: h.Rows, Columns: h.Columns})
	}
	evs = append(evs, CampaignEvent{Type: EventStatus, HostID: h.HostID, Hostname: h.Hostname, Status: h.Status, Error: h.Error})
	s.hub.publish(campaignID, evs...)
}

// sweep times out campaigns past their deadline that no timer here
// covers: those of a replica that stopped (or of a previous run).
func (s *Server) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open, err := s.db.OpenCampaigns(ctx)
	if err != nil {
		s.logger.Error("sweeping campaigns", "err", err)
		return
	}
	now := s.now()
	for _, c := range open {
		s.timerMu.Lock()
		_, mine := s.timers[c.ID]
		s.timerMu.Unlock()
		if !mine && !c.Deadline.After(now) {
			s.expire(c.ID)
		}
	}
}

func (s *Server) doneEvent(ctx context.Context, id string) CampaignEvent {
	sum, err := s.db.CampaignSummary(ctx, id)
	if err != nil {
		s.logger.Error("summarising campaign", "campaign", id, "err", err)
	}
	s.logger.Info("live query done", "campaign", id, "total", sum.Total, "ok", sum.OK, "error", sum.Error,
		"timeout", sum.Timeout, "offline", sum.Offline)
	return CampaignEvent{Type: EventDone, Summary: sum}
}

func (s *Server) scheduleDeadline(id string, deadline time.Time) {
	d := deadline.Sub(s.now())
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	select {
	case <-s.stop:
		return
	default:
	}
	s.timers[id] = time.AfterFunc(max(d, 0), func() { s.expire(id) })
}

func (s *Server) cancelDeadline(id string) {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if t, ok := s.timers[id]; ok {
		t.Stop()
		delete(s.timers, id)
	}
}

func (s *Server) expire(id string) {
	s.timerMu.Lock()
	delete(s.timers, id)
	s.timerMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	timedOut, completed, err := s.db.ExpireCampaign(ctx, id, s.now())
	if err != nil {
		s.logger.Error("expiring campaign", "campaign", id, "err", err)
		return
	}
	s.local.forget(id)
	if !completed {
		return
	}
	evs := make([]CampaignEvent, 0, len(timedOut)+1)
	for _, h := range timedOut {
		evs = append(evs, CampaignEvent{Type: EventStatus, HostID: h.HostID, Hostname: h.Hostname, Status: h.Status, Error: h.Error})
	}
	evs = append(evs, s.doneEvent(ctx, id))
	s.hub.publish(id, evs...)
	s.announceCampaign(ctx, id)
}

// hub fans campaign events out to subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[*subscriber]bool
}

func newHub() *hub { return &hub{subs: map[string]map[*subscriber]bool{}} }

type subscriber struct {
	ch   chan CampaignEvent
	sent map[sentKey]bool // events already sent, to drop the replay/publish overlap
}

type sentKey struct{ typ, host string }

// send delivers without blocking; the buffer is sized for the whole
// campaign, so a full buffer means a duplicate or a bug, never a loss of
// a first event.
func (sub *subscriber) send(ev CampaignEvent) {
	k := sentKey{ev.Type, ev.HostID}
	if sub.sent[k] {
		return
	}
	sub.sent[k] = true
	select {
	case sub.ch <- ev:
	default:
	}
}

// subscribe follows c from what it holds (see followLocked).
func (h *hub) subscribe(c Campaign) *subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.followLocked(c)
}

// followLocked makes a subscriber of c: it replays c's hosts that have
// answered (or will not), then, if c is done, done, and closes; else it
// is added to c's subscribers. h.mu is held.
func (h *hub) followLocked(c Campaign) *subscriber {
	// Two events per host plus done: the buffer can hold everything a
	// campaign will ever send, so publishers never block on a slow reader.
	sub := &subscriber{ch: make(chan CampaignEvent, 2*len(c.Hosts)+1), sent: make(map[sentKey]bool, 2*len(c.Hosts)+1)}
	for _, ch := range c.Hosts {
		if !state.FinalStatus(ch.Status) {
			continue
		}
		if ch.Status == state.StatusOK {
			sub.send(CampaignEvent{Type: EventResult, HostID: ch.HostID, Hostname: ch.Hostname, Rows: ch.Rows, Columns: ch.Columns})
		}
		sub.send(CampaignEvent{Type: EventStatus, HostID: ch.HostID, Hostname: ch.Hostname, Status: ch.Status, Error: ch.Error})
	}
	if c.Done {
		sub.send(CampaignEvent{Type: EventDone, Summary: c.Summary})
		close(sub.ch)
		return sub
	}
	if h.subs[c.ID] == nil {
		h.subs[c.ID] = map[*subscriber]bool{}
	}
	h.subs[c.ID][sub] = true
	return sub
}

// unsubscribe returns the cancel of sub: it stops following (and closes
// the channel) unless done already did.
func (h *hub) unsubscribe(id string, sub *subscriber) func() {
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.subs[id][sub] {
			delete(h.subs[id], sub)
			if len(h.subs[id]) == 0 {
				delete(h.subs, id)
			}
			close(sub.ch)
		}
	}
}

func (h *hub) publish(id string, evs ...CampaignEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs[id] {
		for _, ev := range evs {
			sub.send(ev)
			if ev.Type == EventDone {
				close(sub.ch)
				delete(h.subs[id], sub)
				break
			}
		}
	}
	if len(h.subs[id]) == 0 {
		delete(h.subs, id)
	}
}
