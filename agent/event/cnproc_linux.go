package event

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process connector constants (linux/connector.h, linux/cn_proc.h).
const (
	cnIdxProc          = 1
	cnValProc          = 1
	procCnMcastListen  = 1
	procCnMcastIgnore  = 2
	procEventExec      = 0x00000002
	cnMsgLen           = 20 // struct cn_msg without data
	procEventHeaderLen = 16 // what, cpu, timestamp_ns
)

// cnprocSource reads exec notifications from the netlink process connector
// and reads the rest from /proc. It is the fallback when audit is not
// available: it only has pids, and a process that exits before /proc is read
// leaves a row with less detail (counted in ProcGone).
type cnprocSource struct {
	log    *slog.Logger
	sink   Sink
	sk     *nlSocket
	boot   time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	c      counters
}

// cnprocRcvBuf is the receive buffer of the connector socket: multicast
// messages that do not fit are dropped by the kernel (ENOBUFS, counted).
const cnprocRcvBuf = 8 << 20

func startCnProc(ctx context.Context, log *slog.Logger, sink Sink, rcvbuf int) (*cnprocSource, error) {
	sk, err := newNLSocket(unix.NETLINK_CONNECTOR, cnIdxProc, rcvbuf, 500*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("open process connector socket: %w", err)
	}
	s := &cnprocSource{log: log, sink: sink, sk: sk, boot: bootTime()}
	if err := s.listen(procCnMcastListen); err != nil {
		sk.Close()
		return nil, fmt.Errorf("subscribe to process connector: %w", err)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.run(ctx)
	return s, nil
}

func (s *cnprocSource) listen(op uint32) error {
	data := make([]byte, cnMsgLen+4)
	binary.NativeEndian.PutUint32(data[0:], cnIdxProc)
	binary.NativeEndian.PutUint32(data[4:], cnValProc)
	binary.NativeEndian.PutUint16(data[16:], 4)
	binary.NativeEndian.PutUint32(data[cnMsgLen:], op)
	_, err := s.sk.Send(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: syscall.NLMSG_DONE}, Data: data})
	return err
}

func (s *cnprocSource) run(ctx context.Context) {
	defer s.wg.Done()
	var lastErr time.Time
	for ctx.Err() == nil {
		n, err := s.sk.recv(false)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				s.c.overflows.Add(1)
			default:
				if time.Since(lastErr) > time.Minute {
					s.log.Warn("cn_proc: receive failed", "err", err)
					lastErr = time.Now()
				}
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		msgs, err := syscall.ParseNetlinkMessage(s.sk.buf[:n])
		if err != nil {
			s.c.parseErrors.Add(1)
			continue
		}
		for _, m := range msgs {
			s.handle(m.Data)
		}
	}
}

func (s *cnprocSource) handle(d []byte) {
	if len(d) < cnMsgLen+procEventHeaderLen+8 {
		return
	}
	ev := d[cnMsgLen:]
	if binary.NativeEndian.Uint32(ev[0:]) != procEventExec {
		return
	}
	ts := binary.NativeEndian.Uint64(ev[8:])
	pid := int(binary.NativeEndian.Uint32(ev[16:]))
	tgid := int(binary.NativeEndian.Uint32(ev[20:]))
	if pid != tgid {
		return // exec by a non-leader thread is reported for the leader too
	}
	t := time.Now()
	if !s.boot.IsZero() && ts > 0 {
		t = s.boot.Add(time.Duration(ts))
	}
	row := procRow(pid)
	if row["cmdline"] == "" && row["path"] == "" {
		s.c.procGone.Add(1)
	}
	row["syscall"] = "execve"
	setTimes(row, t, s.boot)
	s.sink.Add("process_events", row)
	s.c.events.Add(1)
}

func (s *cnprocSource) Stats() Stats {
	return s.c.snapshot(Stats{Source: "cn_proc", Active: true})
}

func (s *cnprocSource) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		_ = s.listen(procCnMcastIgnore)
		err = s.sk.Close()
	})
	return err
}

// procRow reads what /proc still knows about pid into a process_events row.
func procRow(pid int) map[string]string {
	dir := "/proc/" + strconv.Itoa(pid)
	row := map[string]string{"pid": strconv.Itoa(pid), "parent": "-1"}
	for _, k := range []string{"path", "cmdline", "cmdline_size", "cwd", "auid", "uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid",
		"mode", "owner_uid", "owner_gid", "env", "env_count", "env_size", "overflows"} {
		row[k] = ""
	}
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		row["cmdline"] = strings.Join(args, " ")
		row["cmdline_size"] = strconv.Itoa(len(b))
	}
	if p, err := os.Readlink(dir + "/exe"); err == nil {
		row["path"] = strings.TrimSuffix(p, " (deleted)")
	}
	if p, err := os.Readlink(dir + "/cwd"); err == nil {
		row["cwd"] = p
	}
	if b, err := os.ReadFile(dir + "/loginuid"); err == nil {
		row["auid"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(dir + "/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			fs := strings.Fields(v)
			switch k {
			case "PPid":
				if len(fs) > 0 {
					row["parent"] = fs[0]
				}
			case "Uid":
				if len(fs) == 4 {
					row["uid"], row["euid"], row["suid"], row["fsuid"] = fs[0], fs[1], fs[2], fs[3]
				}
			case "Gid":
				if len(fs) == 4 {
					row["gid"], row["egid"], row["sgid"], row["fsgid"] = fs[0], fs[1], fs[2], fs[3]
				}
			}
		}
	}
	if row["path"] != "" {
		var st unix.Stat_t
		if unix.Stat(row["path"], &st) == nil {
			row["mode"] = fmt.Sprintf("%07o", st.Mode)
			row["owner_uid"] = strconv.FormatUint(uint64(st.Uid), 10)
			row["owner_gid"] = strconv.FormatUint(uint64(st.Gid), 10)
		}
	}
	fileTimes(row, row["path"])
	return row
}
