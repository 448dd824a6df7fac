package control

import (
	"net"
	"sync"
	"time"
)

func sourceIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// limiter counts failures per source address in fixed windows.
type limiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	m      map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(limit int, w time.Duration) *limiter {
	return &limiter{limit: limit, window: w, m: map[string]*window{}}
}

// blocked reports whether src has reached the limit in its window.
func (l *limiter) blocked(src string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.m[src]
	return ok && now.Sub(w.start) < l.window && w.n >= l.limit
}

// fail records a failure and returns the count in the current window.
func (l *limiter) fail(src string, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 100_000 { // bound memory under a spray of addresses
		for k, w := range l.m {
			if now.Sub(w.start) >= l.window {
				delete(l.m, k)
			}
		}
	}
	w, ok := l.m[src]
	if !ok || now.Sub(w.start) >= l.window {
		w = &window{start: now}
		l.m[src] = w
	}
	w.n++
	return w.n
}
