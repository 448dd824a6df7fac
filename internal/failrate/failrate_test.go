package failrate

import (
	"testing"
	"time"
)

func TestLimiterBlocksWithinWindowOnly(t *testing.T) {
	l := New(3, time.Minute)
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		if l.Blocked("1.2.3.4", t0) {
			t.Fatalf("blocked after %d failures", i-1)
		}
		if n := l.Fail("1.2.3.4", t0); n != i {
			t.Fatalf("count %d, want %d", n, i)
		}
	}
	if !l.Blocked("1.2.3.4", t0.Add(59*time.Second)) {
		t.Fatal("not blocked at the limit")
	}
	if l.Blocked("5.6.7.8", t0) {
		t.Fatal("another address blocked")
	}
	if l.Blocked("1.2.3.4", t0.Add(time.Minute)) {
		t.Fatal("still blocked after the window")
	}
	if n := l.Fail("1.2.3.4", t0.Add(time.Minute)); n != 1 {
		t.Fatalf("new window starts at %d", n)
	}
}

func TestSourceIP(t *testing.T) {
	for in, want := range map[string]string{"1.2.3.4:55": "1.2.3.4", "[::1]:8443": "::1", "bare": "bare"} {
		if got := SourceIP(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}
