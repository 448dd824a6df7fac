package event

import (
	"context"
	"os/exec"
	"strconv"
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
	switch source {
	case "audit":
		m := Start(context.Background(), Options{Sink: buf, Tables: []string{"process_events"}})
		if st := m.Stats(); len(st) == 0 || !st[0].Active {
			m.Close()
			b.Skipf("skipping: audit unavailable: %+v", st)
		}
		closer = m
	default:
		s, err := startCnProc(context.Background(), discard(), buf)
		if err != nil {
			b.Skipf("skipping: %v", err)
		}
		closer = s
	}
	defer closer.Close()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt "+strconv.Itoa(b.N)+" ]; do /bin/true; i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
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
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(syscall.TimevalToNsec(r1.Utime) + syscall.TimevalToNsec(r1.Stime) - syscall.TimevalToNsec(r0.Utime) - syscall.TimevalToNsec(r0.Stime))
	var got uint64
	if st := buf.Stats(); len(st) > 0 {
		got = st[0].Added
	}
	if got > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(got), "agent-µs-cpu/exec")
	}
	b.ReportMetric(float64(got)/float64(b.N), "events/exec")
}
