package control

import (
	"testing"
	"time"
)

func TestStateHint(t *testing.T) {
	h := newStateHint()
	if ask, _ := h.check("a"); !ask {
		t.Fatal("a host never checked must ask the state")
	}
	_, gen := h.check("a")
	h.cleanIf("a", gen)
	if ask, _ := h.check("a"); ask {
		t.Fatal("a host found clean asked the state again")
	}
	h.dirty("a")
	if ask, _ := h.check("a"); !ask {
		t.Fatal("a host made dirty did not ask the state")
	}

	// A query put in the state while the host's check was running: the
	// check's empty answer must not mark the host clean.
	_, gen = h.check("b")
	h.dirty("c") // any host: the generation moved
	h.cleanIf("b", gen)
	if ask, _ := h.check("b"); !ask {
		t.Fatal("a check that raced a dirty marked the host clean")
	}

	_, gen = h.check("b")
	h.cleanIf("b", gen)
	h.dirtyAll()
	if ask, _ := h.check("b"); !ask {
		t.Fatal("dirtyAll left a host clean")
	}
}

func TestCheckinsWrittenOncePerInterval(t *testing.T) {
	c := newCheckins(30 * time.Second)
	t0 := time.Unix(1_000_000, 0)
	c.touch("h", "10.0.0.1:1", t0)
	if got := c.take(false); got["h"].Time != t0 || got["h"].RemoteAddr != "10.0.0.1:1" {
		t.Fatalf("first check-in not queued: %v", got)
	}
	c.touch("h", "10.0.0.1:2", t0.Add(10*time.Second))
	if got := c.take(false); len(got) != 0 {
		t.Fatalf("a check-in within the interval was queued: %v", got)
	}
	if last, _ := c.lastSeen("h"); !last.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("memory has %v, want the latest check-in", last)
	}
	c.touch("h", "10.0.0.1:3", t0.Add(31*time.Second))
	if got := c.take(false); !got["h"].Time.Equal(t0.Add(31 * time.Second)) {
		t.Fatalf("a check-in after the interval was not queued: %v", got)
	}
	// A failed write is tried again.
	c.touch("h", "10.0.0.1:4", t0.Add(62*time.Second))
	batch := c.take(false)
	c.unwritten(batch)
	if got := c.take(false); !got["h"].Time.Equal(t0.Add(62 * time.Second)) {
		t.Fatalf("a check-in whose write failed was not queued again: %v", got)
	}
	// At shutdown every newer check-in is written.
	c.touch("h", "10.0.0.1:5", t0.Add(70*time.Second))
	if got := c.take(true); !got["h"].Time.Equal(t0.Add(70 * time.Second)) {
		t.Fatalf("take(all) left the latest check-in: %v", got)
	}
	if got := c.take(true); len(got) != 0 {
		t.Fatalf("take(all) twice queued again: %v", got)
	}
}
