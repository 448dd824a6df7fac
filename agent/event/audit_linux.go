package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"github.com/elastic/go-libaudit/v2/rule"
	"golang.org/x/sys/unix"
)

// Audit rule keys: they tag the events our rules produce, so that rules
// someone else added are not mistaken for ours.
const (
	keyExec   = "vigil_exec"
	keySocket = "vigil_sock"
)

const (
	auditBacklog   = 8192    // kernel backlog we ask for while running
	auditRcvBuf    = 8 << 20 // receive socket buffer
	auditQueueSize = 65536   // messages between the socket reader and the parser
)

type rawMsg struct {
	typ  auparse.AuditMessageType
	data []byte
}

// auditSource reads audit events over netlink as the audit daemon would.
// It uses two sockets: a control client for status and rules, and a receive
// client registered as the audit PID that is only ever read from by one
// goroutine (issuing requests on a socket that another goroutine reads
// from mixes replies with events).
type auditSource struct {
	log    *slog.Logger
	sink   Sink
	tables map[string]bool
	ctl    *libaudit.AuditClient
	rcv    *libaudit.AuditClient
	rcvSk  *nlSocket
	boot   time.Time

	// State to restore on Close.
	prevEnabled uint32
	prevBacklog uint32
	statusKnown bool // prevEnabled and prevBacklog were read, not zero values
	ourRules    [][]byte
	stateFile   string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	c      counters
	lost0  uint32
}

func auditRules(tables map[string]bool) ([]*rule.SyscallRule, error) {
	var arches []string
	switch runtime.GOARCH {
	case "amd64":
		arches = []string{"b64", "b32"}
	case "arm64", "riscv64", "ppc64le", "s390x", "loong64":
		arches = []string{"b64"}
	default:
		return nil, fmt.Errorf("audit rules: architecture %s not supported", runtime.GOARCH)
	}
	var rules []*rule.SyscallRule
	for _, arch := range arches {
		mk := func(key string, syscalls ...string) *rule.SyscallRule {
			return &rule.SyscallRule{
				Type: rule.AppendSyscallRuleType, List: "exit", Action: "always",
				Filters:  []rule.FilterSpec{{Type: rule.ValueFilterType, LHS: "arch", Comparator: "=", RHS: arch}},
				Syscalls: syscalls, Keys: []string{key},
			}
		}
		if tables["process_events"] {
			rules = append(rules, mk(keyExec, "execve", "execveat"))
		}
		if tables["socket_events"] {
			if arch == "b32" {
				// i386 multiplexes socket calls through socketcall.
				rules = append(rules, mk(keySocket, "socketcall"))
			} else {
				rules = append(rules, mk(keySocket, "connect", "bind", "accept", "accept4"))
			}
		}
	}
	return rules, nil
}

// startAudit registers with the kernel's audit subsystem and installs the
// rules for the requested tables. queueSize bounds the messages held
// between the socket reader and the parser (auditQueueSize; tests make it
// tiny to force QueueDropped). On error nothing is left changed.
func startAudit(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string, queueSize int) (*auditSource, error) {
	ctlSk, err := newNLSocket(syscall.NETLINK_AUDIT, 0, 0, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("open audit control socket: %w", err)
	}
	return startAuditOn(ctx, log, sink, tables, stateDir, queueSize, ctlSk)
}

// startAuditOn is startAudit on an open control socket, which it owns from
// here on (closed on error or by Close); tests pass a fake one.
func startAuditOn(ctx context.Context, log *slog.Logger, sink Sink, tables map[string]bool, stateDir string, queueSize int, ctlSk libaudit.NetlinkSendReceiver) (_ *auditSource, err error) {
	a := &auditSource{log: log, sink: sink, tables: tables, ctl: &libaudit.AuditClient{Netlink: ctlSk}, boot: bootTime()}
	defer func() {
		if err != nil {
			a.restore()
		}
	}()
	st, err := a.ctl.GetStatus()
	if err != nil {
		// statusKnown stays false: restore must not act on the zero
		// values (enabled=0 would switch audit off under auditd when the
		// read only timed out).
		return nil, fmt.Errorf("get audit status: %w", err)
	}
	// What restore puts back if a check below fails: the values found, so
	// that a failed start (another receiver holds audit) never disables
	// audit or lowers its backlog under that receiver.
	a.prevEnabled, a.prevBacklog = st.Enabled, st.BacklogLimit
	a.statusKnown = true
	if st.Enabled == 2 {
		return nil, errors.New("audit configuration is locked (immutable, enabled=2): rules cannot be added until reboot")
	}
	if st.PID != 0 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(int(st.PID))); err == nil {
			return nil, fmt.Errorf("audit events are already delivered to pid %d (%s); only one process can receive them", st.PID, procComm(int(st.PID)))
		}
		// A receiver that died without unregistering: the kernel checks
		// the connection and lets us replace it.
		log.Info("audit: previous receiver is gone; replacing it", "pid", st.PID)
	}
	a.prevEnabled, a.prevBacklog, a.lost0 = st.Enabled, st.BacklogLimit, st.Lost
	if stateDir != "" {
		// The audit status we found is remembered on disk before we change
		// it: after a crash the next start restores the true original, not
		// what the crashed run had set.
		a.stateFile = filepath.Join(stateDir, "audit_state.json")
		var saved savedAudit
		if b, err := os.ReadFile(a.stateFile); err == nil && json.Unmarshal(b, &saved) == nil {
			a.prevEnabled, a.prevBacklog = saved.Enabled, saved.BacklogLimit
			log.Info("audit: restoring state saved by a run that did not stop cleanly", "enabled", saved.Enabled, "backlog_limit", saved.BacklogLimit)
		} else if err := writeState(a.stateFile, savedAudit{Enabled: st.Enabled, BacklogLimit: st.BacklogLimit}); err != nil {
			log.Warn("audit: cannot save original audit state; a crash would leave audit changed", "err", err)
		}
	}

	a.rcvSk, err = newNLSocket(syscall.NETLINK_AUDIT, 0, auditRcvBuf, 500*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("open audit receive socket: %w", err)
	}
	a.rcv = &libaudit.AuditClient{Netlink: a.rcvSk}
	if err := a.rcv.SetPID(libaudit.WaitForReply); err != nil {
		return nil, fmt.Errorf("register as audit receiver (set pid): %w", err)
	}
	if st.Enabled == 0 {
		if err := a.ctl.SetEnabled(true, libaudit.WaitForReply); err != nil {
			return nil, fmt.Errorf("enable audit: %w", err)
		}
	}
	if st.BacklogLimit < auditBacklog {
		if err := a.ctl.SetBacklogLimit(auditBacklog, libaudit.WaitForReply); err != nil {
			log.Warn("audit: cannot raise backlog limit; bursts may be lost", "backlog_limit", st.BacklogLimit, "err", err)
		}
	}
	rules, err := auditRules(tables)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		wire, err := rule.Build(r)
		if err != nil {
			return nil, fmt.Errorf("build audit rule %v: %w", r.Syscalls, err)
		}
		if err := a.ctl.AddRule(wire); err != nil {
			// An identical rule carries our key, which only Vigil uses: it
			// was left by an agent that crashed. Take it over so that it
			// is removed on Close.
			if !strings.Contains(err.Error(), "rule exists") {
				return nil, fmt.Errorf("add audit rule %v: %w", r.Syscalls, err)
			}
			log.Info("audit: taking over a rule left by a previous run", "syscalls", r.Syscalls)
		}
		a.ourRules = append(a.ourRules, wire)
	}

	ctx, a.cancel = context.WithCancel(ctx)
	q := make(chan rawMsg, queueSize)
	a.wg.Add(3)
	go a.receive(ctx, q)
	go a.process(ctx, q)
	go a.pollStatus(ctx)
	return a, nil
}

// receive is the only reader of the receive socket.
func (a *auditSource) receive(ctx context.Context, q chan<- rawMsg) {
	defer a.wg.Done()
	defer close(q)
	var lastErr time.Time
	for ctx.Err() == nil {
		n, err := a.rcvSk.recv(false)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				a.c.overflows.Add(1)
			default:
				if time.Since(lastErr) > time.Minute {
					a.log.Warn("audit: receive failed", "err", err)
					lastErr = time.Now()
				}
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		hdr := (*syscall.NlMsghdr)(ptr(a.rcvSk.buf))
		typ := auparse.AuditMessageType(hdr.Type)
		if typ < auparse.AUDIT_USER_AUTH || typ > 2999 {
			continue // replies and control messages, not events
		}
		data := make([]byte, n-syscall.NLMSG_HDRLEN)
		copy(data, a.rcvSk.buf[syscall.NLMSG_HDRLEN:n])
		select {
		case q <- rawMsg{typ: typ, data: data}:
		default:
			a.c.queueDropped.Add(1)
		}
	}
}

// process parses and reassembles records into events.
func (a *auditSource) process(ctx context.Context, q <-chan rawMsg) {
	defer a.wg.Done()
	re, err := libaudit.NewReassembler(1024, 2*time.Second, (*auditStream)(a))
	if err != nil {
		a.log.Error("audit: reassembler", "err", err)
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-q:
			if !ok {
				_ = re.Close()
				return
			}
			msg, err := auparse.Parse(m.typ, string(m.data))
			if err != nil {
				a.c.parseErrors.Add(1)
				continue
			}
			re.PushMessage(msg)
		case <-tick.C:
			_ = re.Maintain()
		}
	}
}

// pollStatus tracks the kernel's lost counter (events the kernel dropped
// because its backlog was full or rate limited).
func (a *auditSource) pollStatus(ctx context.Context) {
	defer a.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.updateLost()
			return
		case <-t.C:
			a.updateLost()
		}
	}
}

func (a *auditSource) updateLost() {
	st, err := a.ctl.GetStatus()
	if err != nil {
		return
	}
	if st.Lost >= a.lost0 {
		a.c.kernelLost.Store(uint64(st.Lost - a.lost0))
	}
	if st.PID != 0 && int(st.PID) != os.Getpid() {
		a.log.Warn("audit: another process took over audit events", "pid", st.PID, "comm", procComm(int(st.PID)))
	}
}

func (a *auditSource) Stats() Stats {
	return a.c.snapshot(Stats{Source: "audit", Active: true})
}

// Close stops reading, removes our rules and restores the audit status
// found at start.
func (a *auditSource) Close() error {
	var err error
	a.once.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		a.wg.Wait()
		err = a.restore()
	})
	return err
}

func (a *auditSource) restore() error {
	var errs []error
	if a.ctl != nil {
		for _, w := range a.ourRules {
			if err := a.ctl.DeleteRule(w); err != nil {
				errs = append(errs, fmt.Errorf("delete audit rule: %w", err))
			}
		}
		a.ourRules = nil
	}
	if a.rcv != nil {
		errs = append(errs, a.rcv.Close()) // clears the audit pid
		a.rcv = nil
	} else if a.rcvSk != nil {
		errs = append(errs, a.rcvSk.Close())
	}
	if a.ctl != nil && a.statusKnown {
		if a.prevBacklog != 0 && a.prevBacklog < auditBacklog {
			if err := a.ctl.SetBacklogLimit(a.prevBacklog, libaudit.WaitForReply); err != nil {
				errs = append(errs, fmt.Errorf("restore audit backlog limit: %w", err))
			}
		}
		if a.prevEnabled == 0 {
			if err := a.ctl.SetEnabled(false, libaudit.WaitForReply); err != nil {
				errs = append(errs, fmt.Errorf("restore audit enabled=0: %w", err))
			}
		}
	}
	if a.ctl != nil {
		errs = append(errs, a.ctl.Close())
		a.ctl = nil
	}
	if a.stateFile != "" && errors.Join(errs...) == nil {
		os.Remove(a.stateFile)
	}
	return errors.Join(errs...)
}

// savedAudit is the audit status found at start, kept on disk while running.
type savedAudit struct {
	Enabled      uint32 `json:"enabled"`
	BacklogLimit uint32 `json:"backlog_limit"`
}

func writeState(path string, st savedAudit) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// auditStream receives reassembled events.
type auditStream auditSource

func (s *auditStream) EventsLost(n int) { s.c.gaps.Add(uint64(n)) }

func (s *auditStream) ReassemblyComplete(msgs []*auparse.AuditMessage) {
	a := (*auditSource)(s)
	var sc *auparse.AuditMessage
	for _, m := range msgs {
		if m.RecordType == auparse.AUDIT_SYSCALL {
			sc = m
			break
		}
	}
	if sc == nil {
		if a.tables["user_events"] && len(msgs) > 0 {
			a.userEvent(msgs[0])
		}
		return
	}
	f := parseFields(recordBody(sc.RawData))
	switch f["key"].str() {
	case keyExec:
		if a.tables["process_events"] {
			a.execEvent(sc, f, msgs)
		}
	case keySocket:
		if a.tables["socket_events"] {
			a.socketEvent(sc, f, msgs)
		}
	}
}

// execEvent builds a process_events row.
func (a *auditSource) execEvent(sc *auparse.AuditMessage, f map[string]field, msgs []*auparse.AuditMessage) {
	if f["success"].value != "yes" {
		return // a failed execve ran nothing
	}
	row := make(map[string]string, 40)
	var execve []string
	var cwd string
	var path0 map[string]field
	for _, m := range msgs {
		switch m.RecordType {
		case auparse.AUDIT_EXECVE:
			execve = append(execve, recordBody(m.RawData))
		case auparse.AUDIT_CWD:
			cwd = parseFields(recordBody(m.RawData))["cwd"].str()
		case auparse.AUDIT_PATH:
			p := parseFields(recordBody(m.RawData))
			if p["item"].value == "0" {
				path0 = p
			}
		}
	}
	argv, err := execveArgv(execve)
	if err != nil {
		a.c.incomplete.Add(1)
	}
	size := 0
	for _, s := range argv {
		size += len(s)
	}
	row["pid"] = f["pid"].value
	row["parent"] = f["ppid"].value
	row["path"] = f["exe"].str()
	row["cmdline"] = strings.Join(argv, " ")
	row["cmdline_size"] = strconv.Itoa(size)
	row["cwd"] = cwd
	for _, k := range []string{"auid", "uid", "euid", "gid", "egid", "fsuid", "suid", "fsgid", "sgid"} {
		row[k] = f[k].value
	}
	row["syscall"] = syscallName(f)
	row["mode"], row["owner_uid"], row["owner_gid"] = "", "", ""
	if path0 != nil {
		row["mode"] = path0["mode"].value
		row["owner_uid"] = path0["ouid"].value
		row["owner_gid"] = path0["ogid"].value
	}
	fileTimes(row, row["path"])
	setTimes(row, sc.Timestamp, a.boot)
	row["env"], row["env_count"], row["env_size"], row["overflows"] = "", "", "", ""
	a.sink.Add("process_events", row)
	a.c.events.Add(1)
}

func syscallName(f map[string]field) string {
	n, err := strconv.Atoi(f["syscall"].value)
	if err != nil {
		return f["syscall"].value
	}
	arch := "x86_64"
	switch f["arch"].value {
	case "c000003e":
		arch = "x86_64"
	case "40000003":
		arch = "i386"
	case "c00000b7":
		arch = "aarch64"
	}
	if t, ok := auparse.AuditSyscalls[arch]; ok {
		if name, ok := t[n]; ok {
			return name
		}
	}
	return f["syscall"].value
}

// setTimes sets osquery's time (unix seconds) and uptime (seconds since
// boot) columns.
func setTimes(row map[string]string, t, boot time.Time) {
	row["time"] = strconv.FormatInt(t.Unix(), 10)
	if !boot.IsZero() {
		row["uptime"] = strconv.FormatInt(int64(t.Sub(boot)/time.Second), 10)
	}
}

// fileTimes sets atime/mtime/ctime/btime of the executed file as osquery
// does (stat at event time; empty if the file is gone).
func fileTimes(row map[string]string, path string) {
	row["atime"], row["mtime"], row["ctime"], row["btime"] = "", "", "", ""
	if path == "" {
		return
	}
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return
	}
	row["atime"] = strconv.FormatInt(st.Atime.Sec, 10)
	row["mtime"] = strconv.FormatInt(st.Mtime.Sec, 10)
	row["ctime"] = strconv.FormatInt(st.Ctime.Sec, 10)
	if st.Mask&unix.STATX_BTIME != 0 {
		row["btime"] = strconv.FormatInt(st.Btime.Sec, 10)
	} else {
		row["btime"] = "0"
	}
}

// bootTime is when the system booted, from /proc/uptime.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(up * float64(time.Second)))
}

func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "unknown process"
	}
	return strings.TrimSpace(string(b))
}
