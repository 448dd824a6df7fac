package event

import (
	"context"
	"log/slog"
	"os"
	"sort"
	"strings"
)

// platformStarters are the real sources of this platform.
func platformStarters() starters {
	return starters{
		audit: func(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string) (source, error) {
			a, err := startAudit(ctx, log, sink, tables, stateDir, auditQueueSize)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return a, nil
		},
		cnproc: func(ctx context.Context, log *slog.Logger, sink Sink) (source, error) {
			c, err := startCnProc(ctx, log, sink, cnprocRcvBuf)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		fanotify: func() (fsBackend, error) {
			f, err := newFanotify()
			if err != nil {
				return nil, err
			}
			return f, nil
		},
		inotify: func() (fsBackend, error) {
			in, err := newInotify()
			if err != nil {
				return nil, err
			}
			return in, nil
		},
	}
}

// startPlatform tries audit netlink first (full argv, uids, cwd; socket and
// user events), then the process connector for process_events only.
func startPlatform(ctx context.Context, m *Manager, sink Sink, want map[string]bool, stateDir string) {
	auditTables := map[string]bool{}
	for _, t := range []string{"process_events", "socket_events", "user_events"} {
		if want[t] {
			auditTables[t] = true
		}
	}
	if len(auditTables) == 0 {
		return
	}
	hint := ""
	if os.Geteuid() != 0 {
		hint = " (not running as root: audit and the process connector need CAP_AUDIT_CONTROL/CAP_NET_ADMIN)"
	}
	a, err := m.start.audit(ctx, m.log, sink, auditTables, stateDir)
	if err == nil {
		m.add(a, strings.Split(keys(auditTables), ","))
		m.log.Info("events: audit netlink source started", "tables", keys(auditTables))
		return
	}
	m.fail(Stats{Source: "audit", Error: err.Error()})
	if !want["process_events"] {
		m.log.Warn("events: audit netlink unavailable; event tables stay empty"+hint, "tables", keys(auditTables), "err", err)
		return
	}
	c, err2 := m.start.cnproc(ctx, m.log, sink)
	if err2 == nil {
		m.add(c, []string{"process_events"})
		m.log.Warn("events: audit netlink unavailable, using the process connector for process_events (no full argv for short-lived processes; socket_events and user_events stay empty)",
			"audit_err", err)
		return
	}
	m.fail(Stats{Source: "cn_proc", Error: err2.Error()})
	m.log.Warn("events: no event source works; event tables stay empty"+hint,
		"tried", "audit netlink, then netlink process connector", "audit_err", err, "cn_proc_err", err2)
}

func keys(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
