package control

import (
	"context"
	"maps"
	"sync"
	"time"
)

// localQueries holds, per host, the live queries this server started for
// hosts whose distributed/read was held here when the query started. The
// woken read answers from memory instead of claiming from the state (a
// read, then a write queued behind every other write, per host); "sent"
// is recorded afterwards in batches. Hosts held by another replica, or
// polling, get their queries by the state's claim as before.
type localQueries struct {
	mu     sync.Mutex
	byHost map[string]map[string]string   // host -> campaign -> SQL, not yet handed out
	handed map[string]map[string]struct{} // host -> campaigns handed out, "sent" not yet written
	open   map[string]localCampaign       // campaigns with entries above
	marks  map[string][]string            // campaign -> hosts to mark sent
	kick   chan struct{}
}

type localCampaign struct {
	deadline time.Time
	hosts    []string
}

func newLocalQueries() *localQueries {
	return &localQueries{
		byHost: map[string]map[string]string{}, handed: map[string]map[string]struct{}{},
		open: map[string]localCampaign{}, marks: map[string][]string{},
		kick: make(chan struct{}, 1),
	}
}

// add keeps a campaign's query for the given hosts.
func (l *localQueries) add(campaignID, sql string, deadline time.Time, hosts []string) {
	if len(hosts) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[campaignID] = localCampaign{deadline: deadline, hosts: hosts}
	for _, h := range hosts {
		m := l.byHost[h]
		if m == nil {
			m = map[string]string{}
			l.byHost[h] = m
		}
		m[campaignID] = sql
	}
}

// take hands out the host's queries of campaigns still running at now
// and queues them to be marked sent.
func (l *localQueries) take(hostID string, now time.Time) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.byHost[hostID]
	if m == nil {
		return nil
	}
	delete(l.byHost, hostID)
	var out map[string]string
	for cid, sql := range m {
		c, ok := l.open[cid]
		if !ok || !c.deadline.After(now) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[cid] = sql
		h := l.handed[hostID]
		if h == nil {
			h = map[string]struct{}{}
			l.handed[hostID] = h
		}
		h[cid] = struct{}{}
		l.marks[cid] = append(l.marks[cid], hostID)
	}
	if out != nil {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return out
}

// drop removes, from queries claimed in the state, those already handed
// out from memory whose "sent" is not yet written (so still pending there).
func (l *localQueries) drop(hostID string, q map[string]string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.handed[hostID]
	if len(h) == 0 || len(q) == 0 {
		return q
	}
	q = maps.Clone(q)
	for cid := range h {
		delete(q, cid)
	}
	return q
}

// forget drops a campaign that ended (or whose host answered elsewhere):
// what was not handed out is not any more.
func (l *localQueries) forget(campaignID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.open[campaignID]
	if !ok {
		return
	}
	delete(l.open, campaignID)
	for _, h := range c.hosts {
		if m := l.byHost[h]; m != nil {
			delete(m, campaignID)
			if len(m) == 0 {
				delete(l.byHost, h)
			}
		}
	}
}

// forgetHost drops one host's entry of a campaign (it answered through
// another replica).
func (l *localQueries) forgetHost(campaignID, hostID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := l.byHost[hostID]; m != nil {
		delete(m, campaignID)
		if len(m) == 0 {
			delete(l.byHost, hostID)
		}
	}
}

// markInterval is how long hand-outs gather before one write marks them
// sent.
const markInterval = 5 * time.Millisecond

// markLoop writes "sent" for queries handed out from memory, one
// statement per campaign and batch, until stop.
func (s *Server) markLoop() {
	defer close(s.marksDone)
	for {
		select {
		case <-s.local.kick:
		case <-s.stop:
			s.flushMarks()
			return
		}
		select {
		case <-time.After(markInterval):
		case <-s.stop:
		}
		s.flushMarks()
	}
}

func (s *Server) flushMarks() {
	l := s.local
	l.mu.Lock()
	marks := l.marks
	l.marks = map[string][]string{}
	l.mu.Unlock()
	if len(marks) == 0 {
		return
	}
	{
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		now := s.now()
		for cid, hosts := range marks {
			if err := s.db.MarkSent(ctx, cid, hosts, now); err != nil {
				// The hosts got the query; their status stays pending until
				// they answer or time out, which the summary counts alike.
				s.logger.Error("recording live queries as sent", "campaign", cid, "hosts", len(hosts), "err", err)
			}
		}
		cancel()
		l.mu.Lock()
		for cid, hosts := range marks {
			for _, h := range hosts {
				if m := l.handed[h]; m != nil {
					delete(m, cid)
					if len(m) == 0 {
						delete(l.handed, h)
					}
				}
			}
		}
		l.mu.Unlock()
	}
}

// held reports whether a distributed/read of the host is waiting here.
func (n *notifier) held(hostID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.ch[hostID]
	return ok
}
