package event

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
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
		s, err := startCnProc(context.Background(), discard(), buf)
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
