// Package failrate counts failed authentications per source address in
// fixed windows, so that the agent API (control) and the people API (web)
// can refuse an address that keeps guessing secrets or tokens. It imports
// only the standard library.
package failrate

import (
	"net"
	"sync"
	"time"
)

// SourceIP returns the address part of a request's RemoteAddr.
func SourceIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// Limiter counts failures per source address in fixed windows.
type Limiter struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	m      map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// New returns a limiter that blocks an address after limit failures within
// w of its first one.
func New(limit int, w time.Duration) *Limiter {
	return &Limiter{limit: limit, window: w, m: map[string]*window{}}
}

// Blocked reports whether src has reached the limit in its window.
func (l *Limiter) Blocked(src string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.m[src]
	return ok && now.Sub(w.start) < l.window && w.n >= l.limit
}

// Fail records a failure and returns the count in the current window.
func (l *Limiter) Fail(src string, now time.Time) int {
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
