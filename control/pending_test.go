package control

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestStateHint(t *testing.T) {
	ctx := context.Background()
	h := newStateHint()
	_, gen := h.check("a")
	h.cleanIf("a", gen)
	if ask, _ := h.check("a"); !ask {
		t.Fatal("before the first load every host must ask the state")
	}
	if err := h.load(ctx, func(context.Context) ([]string, error) { return []string{"a"}, nil }); err != nil {
		t.Fatal(err)
	}
	if ask, _ := h.check("a"); !ask {
		t.Fatal("a host pending in the state did not ask")
	}
	if ask, _ := h.check("b"); ask {
		t.Fatal("a host with nothing in the state asked")
	}
	_, gen = h.check("a")
	h.cleanIf("a", gen)
	if ask, _ := h.check("a"); ask {
		t.Fatal("a host found clean asked the state again")
	}
	h.dirty("a")
	if ask, _ := h.check("a"); !ask {
		t.Fatal("a host made dirty did not ask the state")
	}

	// A query put in the state for the host while its look was running:
	// the look's empty answer must not mark the host clean.
	h.dirty("b")
	_, gen = h.check("b")
	h.dirty("b")
	h.cleanIf("b", gen)
	if ask, _ := h.check("b"); !ask {
		t.Fatal("a look that raced a dirty marked the host clean")
	}

	// A load forgets marks older than its read, keeps those made while
	// it read.
	h.dirty("old")
	err := h.load(ctx, func(context.Context) ([]string, error) {
		h.dirty("during")
		return []string{"listed"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"old": false, "during": true, "listed": true, "a": false} {
		if ask, _ := h.check(host); ask != want {
			t.Errorf("after a load, %s asks %v, want %v", host, ask, want)
		}
	}

	// A failed load: everyone asks until one succeeds.
	if err := h.load(ctx, func(context.Context) ([]string, error) { return nil, errors.New("down") }); err == nil {
		t.Fatal("a failed load reported no error")
	}
	if ask, _ := h.check("nobody"); !ask {
		t.Fatal("after a failed load a host did not ask")
	}
	h.load(ctx, func(context.Context) ([]string, error) { return nil, nil })
	if ask, _ := h.check("nobody"); ask {
		t.Fatal("after a good load a host with nothing asked")
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

// Hand-outs are marked sent only once older than the cutoff, and not at
// all once answered.
func TestLocalQueriesMarksByAge(t *testing.T) {
	l := newLocalQueries()
	t0 := time.Unix(1_000_000, 0)
	l.add("c", "SELECT 1", t0.Add(time.Minute), []string{"h1", "h2", "h3"})
	if q := l.take("h1", t0); q["c"] != "SELECT 1" {
		t.Fatalf("take h1 = %v", q)
	}
	l.take("h2", t0.Add(3*time.Second))
	l.take("h3", t0)
	l.answered("c", "h3")
	marks, left := l.takeMarks(t0.Add(time.Second), false)
	if len(marks["c"]) != 1 || marks["c"][0] != "h1" || left != 1 {
		t.Fatalf("marks %v, %d left; want h1 and one left", marks, left)
	}
	l.written(marks)
	marks, left = l.takeMarks(t0.Add(time.Second), false)
	if len(marks) != 0 || left != 1 {
		t.Fatalf("second take %v, %d left; want nothing and one left", marks, left)
	}
	marks, left = l.takeMarks(t0, true)
	if len(marks["c"]) != 1 || marks["c"][0] != "h2" || left != 0 {
		t.Fatalf("take all %v, %d left; want h2 and none left", marks, left)
	}
}

// wakeMany releases the named hosts' waiters, channel and parked alike,
// and leaves every other host's.
func TestNotifierWakeMany(t *testing.T) {
	var run []*parkedHold
	n := newNotifier(func(p *parkedHold) { run = append(run, p) })
	ids := make([]string, 300)
	chans := map[string]<-chan struct{}{}
	for i := range ids {
		ids[i] = fmt.Sprintf("host-%03d", i)
		chans[ids[i]] = n.channel(ids[i])
	}
	p := &parkedHold{}
	n.park("host-007", p)
	if !p.registered.Load() {
		t.Fatal("park did not mark the hold registered")
	}
	n.wakeMany(append(ids[:150:150], "unknown"))
	for i, id := range ids {
		closed := false
		select {
		case <-chans[id]:
			closed = true
		default:
		}
		if woken := i < 150; closed != woken || n.held(id) != !woken {
			t.Errorf("%s: closed %v, held %v; want closed %v", id, closed, n.held(id), woken)
		}
	}
	if p.registered.Load() || len(run) != 1 || run[0] != p {
		t.Errorf("woken parked hold: registered %v, run %v", p.registered.Load(), run)
	}
}
