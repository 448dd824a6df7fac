package event

import (
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The sentinel helpers replace "sleep, then count" in the tests that check
// that nothing more (no duplicate, no late event) arrives: after the
// workload one more event is made and waited for. Audit (the kernel's one
// queue, then the reassembler, which hands events on in sequence order and
// holds a later event until every earlier one is complete or expired),
// cn_proc and the file sources deliver in order, so once the sentinel is
// in the buffer every event of the workload that will ever arrive has.

// awaitSentinel calls fire (which makes one sentinel event) until a row of
// table satisfies seen; fire is repeated every few seconds in case the
// sentinel itself was dropped (the loss tests), and the test fails if no
// sentinel shows within 30 s.
func awaitSentinel(t *testing.T, b *Buffer, table string, fire func(), seen func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		fire()
		// Longer than the reassembler's 2 s timeout plus its 0.5 s tick:
		// an incomplete earlier event holds the sentinel back that long.
		next := time.Now().Add(3 * time.Second)
		for time.Now().Before(next) {
			rows, _ := b.Rows(table, 0)
			for _, r := range rows {
				if seen(r) {
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Fatalf("no sentinel event in %s within 30 s: cannot tell that the workload's events are all in", table)
}

// execSentinel runs /bin/true with a unique argument and waits until its
// process_events row is in b (matched by pid or argument, as cn_proc may
// find the short-lived process gone before reading its cmdline).
func execSentinel(t *testing.T, b *Buffer) {
	t.Helper()
	tag := "vigil-sentinel-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var mu sync.Mutex
	pids := map[string]bool{}
	awaitSentinel(t, b, "process_events", func() {
		cmd := exec.Command("/bin/true", tag)
		if err := cmd.Run(); err != nil {
			t.Fatalf("sentinel exec: %v", err)
		}
		mu.Lock()
		pids[strconv.Itoa(cmd.Process.Pid)] = true
		mu.Unlock()
	}, func(r map[string]string) bool {
		mu.Lock()
		defer mu.Unlock()
		return pids[r["pid"]] || r["cmdline"] == "/bin/true "+tag
	})
}

// socketSentinel runs the socket child with one connection (a bind, a
// connect and an accept) and waits until a socket_events row of it is in b.
func socketSentinel(t *testing.T, b *Buffer) {
	t.Helper()
	var mu sync.Mutex
	pids := map[string]bool{}
	awaitSentinel(t, b, "socket_events", func() {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "VIGIL_SOCK_ONCE_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sentinel socket child: %v: %s", err, out)
		}
		mu.Lock()
		pids[strconv.Itoa(cmd.Process.Pid)] = true
		mu.Unlock()
	}, func(r map[string]string) bool {
		mu.Lock()
		defer mu.Unlock()
		return pids[r["pid"]]
	})
}
