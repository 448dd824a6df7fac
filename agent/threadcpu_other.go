//go:build !linux

package agent

import (
	"syscall"
	"time"
)

// threadCPUReader falls back to the process's CPU time where per-thread
// clocks are not available: the watchdog then charges every goroutine's
// CPU to the running query.
func threadCPUReader() func() time.Duration {
	return func() time.Duration {
		u, s := threadRusage()
		return u + s
	}
}

func threadRusage() (user, sys time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
