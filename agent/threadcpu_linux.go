package agent

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPUReader returns a reader of the CPU time (user + system) of the
// calling OS thread. The caller must be locked to its thread
// (runtime.LockOSThread) for the reading to mean "this goroutine"; the
// reader itself may be called from any goroutine of the process, which is
// how the watchdog samples a query that is still running.
//
// It reads the thread's CPU-time clock (what pthread_getcpuclockid gives:
// nanoseconds, any thread of the process may read it) and falls back to
// /proc/self/task/TID/stat (clock ticks).
func threadCPUReader() func() time.Duration {
	tid := unix.Gettid()
	// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): (^tid << 3) | PERTHREAD(4) | SCHED(2).
	clock := int32(^tid<<3 | 6)
	var ts unix.Timespec
	if unix.ClockGettime(clock, &ts) == nil {
		return func() time.Duration {
			var ts unix.Timespec
			if unix.ClockGettime(clock, &ts) != nil {
				return 0
			}
			return time.Duration(ts.Nano())
		}
	}
	path := "/proc/self/task/" + strconv.Itoa(tid) + "/stat"
	return func() time.Duration { return procStatCPU(path) }
}

// procStatCPU reads utime + stime of a /proc stat file (fields 14 and 15,
// counted after the parenthesised command name, which may hold spaces).
func procStatCPU(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// threadRusage returns the user and system CPU time of the calling thread.
func threadRusage() (user, sys time.Duration) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
