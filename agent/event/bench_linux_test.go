package event

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkExecAudit measures the agent's CPU per exec event with the audit
// source: a shell runs b.N /bin/true; the metric is this process's CPU time
// divided by the events received.
func BenchmarkExecAudit(b *testing.B) { benchExec(b, "audit") }

// BenchmarkExecCnProc is the same with the process connector fallback.
func BenchmarkExecCnProc(b *testing.B) { benchExec(b, "cn_proc") }

func benchExec(b *testing.B, source string) {
	if !isRoot() {
		b.Skip("skipping: needs root")
	}
	buf := NewBuffer(BufferOptions{Max: 1 << 20})
	var closer interface{ Close() error }
	var stats func() Stats
	switch source {
	case "audit":
		m := Start(context.Background(), Options{Sink: buf, Tables: []string{"process_events"}})
		if st := m.Stats(); len(st) == 0 || !st[0].Active {
			m.Close()
			b.Skipf("skipping: audit unavailable: %+v", st)
		}
		closer, stats = m, func() Stats { return m.Stats()[0] }
	default:
		s, err := startCnProc(context.Background(), discard(), buf, cnprocRcvBuf)
		if err != nil {
			b.Skipf("skipping: %v", err)
		}
		closer, stats = s, s.Stats
	}
	defer closer.Close()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	// b.N execs of /bin/true, one at a time; the shell prints each pid so
	// that the fraction captured counts exactly these execs, not the
	// machine's other processes (audit sees every exec).
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt "+strconv.Itoa(b.N)+" ]; do /bin/true & echo $!; wait $!; i=$((i+1)); done")
	out, err := cmd.Output()
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st := buf.Stats(); len(st) > 0 && st[0].Added >= uint64(b.N) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	// Give stragglers a moment (their CPU counts), then count this burst's
	// pids among the rows.
	time.Sleep(200 * time.Millisecond)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(syscall.TimevalToNsec(r1.Utime) + syscall.TimevalToNsec(r1.Stime) - syscall.TimevalToNsec(r0.Utime) - syscall.TimevalToNsec(r0.Stime))
	want := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		want[p] = true
	}
	rows, _ := buf.Rows("process_events", 0)
	var got uint64
	for _, r := range rows {
		if want[r["pid"]] {
			got++
			delete(want, r["pid"]) // once
		}
	}
	all := uint64(len(rows))
	if all > 0 {
		// CPU over every exec the agent handled during the burst,
		// including other processes' on this machine.
		b.ReportMetric(float64(cpu.Microseconds())/float64(all), "agent-µs-cpu/exec")
	}
	b.ReportMetric(float64(all)-float64(got), "other_execs")
	b.ReportMetric(float64(got)/float64(b.N), "events/exec")
	// What was lost, and why: every counter of the source and the buffer.
	st := stats()
	var bufDropped uint64
	if bs := buf.Stats(); len(bs) > 0 {
		bufDropped = bs[0].Dropped
	}
	for _, m := range []struct {
		n    uint64
		unit string
	}{
		{st.KernelLost, "kernel_lost"}, {st.SocketOverflows, "socket_overflows"}, {st.QueueDropped, "queue_dropped"},
		{st.SequenceGaps, "sequence_gaps"}, {st.Incomplete, "incomplete"}, {st.ParseErrors, "parse_errors"},
		{st.ProcGone, "proc_gone"}, {bufDropped, "buffer_dropped"},
	} {
		b.ReportMetric(float64(m.n), m.unit)
	}
}

// Burst benchmarks: a burst of burstExecs execs of /bin/true at full speed
// from burstWorkers parallel workers. The load runs in a separate child
// process (the test binary re-executed), so this process's rusage delta is
// the agent's cost alone: the source's goroutines, parsing and buffering.
//
// Run once, under the shared lock:
//
//	flock /tmp/vigil-bench.lock go test ./agent/event -count=1 -run '^$' -bench '^BenchmarkExecBurst' -benchtime=1x
//
// Metrics: captured (fraction of the burst's pids seen at least once) and
// missing (their number), duplicates (extra rows for a pid), every loss counter of the source and the buffer,
// agent-µs-cpu/exec (agent CPU over every exec it handled in the window,
// the machine's other execs included) and agent-µs-cpu/burst-exec (over
// the burst's execs only), and the burst's rate.
const (
	burstExecs   = 5000
	burstWorkers = 8
)

// BenchmarkExecBurstAudit runs the burst with the audit netlink source.
func BenchmarkExecBurstAudit(b *testing.B) { benchBurst(b, "audit") }

// BenchmarkExecBurstCnProc runs the burst with the process connector.
func BenchmarkExecBurstCnProc(b *testing.B) { benchBurst(b, "cn_proc") }

// BenchmarkExecBurstBaseline runs the burst with no source: its
// burst-execs/s is the baseline the sources' rates compare with.
func BenchmarkExecBurstBaseline(b *testing.B) {
	var wall time.Duration
	for range b.N {
		_, w, err := runBurst(burstExecs, burstWorkers)
		if err != nil {
			b.Fatal(err)
		}
		wall += w
	}
	b.ReportMetric(float64(burstExecs*b.N)/wall.Seconds(), "burst-execs/s")
}

// burstChild runs spec "N:W": N execs of /bin/true from W goroutines, each
// waited for, then prints the pids one per line.
func burstChild(spec string) error {
	ns, ws, _ := strings.Cut(spec, ":")
	n, err1 := strconv.Atoi(ns)
	w, err2 := strconv.Atoi(ws)
	if err1 != nil || err2 != nil || n <= 0 || w <= 0 {
		return fmt.Errorf("burst spec %q: want N:WORKERS", spec)
	}
	pids := make([]int, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, w)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				pid, err := syscall.ForkExec("/bin/true", []string{"/bin/true"}, &syscall.ProcAttr{})
				if err != nil {
					errc <- fmt.Errorf("exec %d: %w", i, err)
					return
				}
				var st syscall.WaitStatus
				if _, err := syscall.Wait4(pid, &st, 0, nil); err != nil {
					errc <- fmt.Errorf("wait %d: %w", pid, err)
					return
				}
				pids[i] = pid
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	for _, p := range pids {
		fmt.Fprintln(out, p)
	}
	return out.Flush()
}

// runBurst starts the burst child and returns the pids it exec'd.
func runBurst(n, workers int) (map[string]bool, time.Duration, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("VIGIL_BURST_CHILD=%d:%d", n, workers))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	if err != nil {
		return nil, wall, fmt.Errorf("burst child: %w: %s", err, stderr.String())
	}
	pids := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		pids[p] = true
	}
	if len(pids) != n {
		return nil, wall, fmt.Errorf("burst child reported %d distinct pids, want %d", len(pids), n)
	}
	return pids, wall, nil
}

// waitQuiet waits until the table's Added counter reached min and then did
// not move for quiet, or until the deadline.
func waitQuiet(buf *Buffer, table string, min uint64, quiet, deadline time.Duration) {
	end := time.Now().Add(deadline)
	var last uint64
	lastChange := time.Now()
	for time.Now().Before(end) {
		var added uint64
		for _, s := range buf.Stats() {
			if s.Table == table {
				added = s.Added
			}
		}
		if added != last {
			last, lastChange = added, time.Now()
		}
		if added >= min && time.Since(lastChange) >= quiet {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func benchBurst(b *testing.B, name string) {
	if !isRoot() {
		b.Skip("skipping: needs root")
	}
	buf := NewBuffer(BufferOptions{Max: 1 << 22})
	st := starters{}
	real := platformStarters()
	switch name {
	case "audit":
		st.audit = real.audit
	default:
		st.audit = func(context.Context, *slog.Logger, Sink, map[string]bool, string) (source, error) {
			return nil, fmt.Errorf("benchmarking the process connector")
		}
		st.cnproc = real.cnproc
	}
	m := start(context.Background(), Options{Sink: buf, Tables: []string{"process_events"}}, st)
	defer m.Close()
	src, ok := findStats(m.Stats(), name)
	if !ok || !src.Active {
		b.Skipf("skipping: %s unavailable: %+v", name, m.Stats())
	}
	time.Sleep(200 * time.Millisecond)
	var captured, dups, handled uint64
	var cpu, wall time.Duration
	b.ResetTimer()
	for range b.N {
		_, before := buf.Rows("process_events", 0)
		var r0, r1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		pids, w, err := runBurst(burstExecs, burstWorkers)
		if err != nil {
			b.Fatal(err)
		}
		wall += w
		waitQuiet(buf, "process_events", uint64(burstExecs), 500*time.Millisecond, 60*time.Second)
		syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		cpu += time.Duration(syscall.TimevalToNsec(r1.Utime) + syscall.TimevalToNsec(r1.Stime) - syscall.TimevalToNsec(r0.Utime) - syscall.TimevalToNsec(r0.Stime))
		rows, _ := buf.Rows("process_events", before)
		handled += uint64(len(rows))
		seen := map[string]int{}
		for _, r := range rows {
			if pids[r["pid"]] {
				seen[r["pid"]]++
			}
		}
		for _, n := range seen {
			captured++
			dups += uint64(n - 1)
		}
	}
	b.StopTimer()
	total := float64(burstExecs * b.N)
	b.ReportMetric(float64(captured)/total, "captured")
	b.ReportMetric(total-float64(captured), "missing")
	b.ReportMetric(float64(dups), "duplicates")
	b.ReportMetric(total/wall.Seconds(), "burst-execs/s")
	if handled > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(handled), "agent-µs-cpu/exec")
	}
	b.ReportMetric(float64(cpu.Microseconds())/total, "agent-µs-cpu/burst-exec")
	b.ReportMetric(float64(handled)-float64(captured+dups), "other_execs")
	s, _ := findStats(m.Stats(), name)
	var bufDropped uint64
	for _, bs := range buf.Stats() {
		bufDropped += bs.Dropped
	}
	for _, c := range []struct {
		n    uint64
		unit string
	}{
		{s.KernelLost, "kernel_lost"}, {s.SocketOverflows, "socket_overflows"}, {s.QueueDropped, "queue_dropped"},
		{s.SequenceGaps, "sequence_gaps"}, {s.Incomplete, "incomplete"}, {s.ParseErrors, "parse_errors"},
		{s.ProcGone, "proc_gone"}, {bufDropped, "buffer_dropped"},
	} {
		b.ReportMetric(float64(c.n), c.unit)
	}
}
