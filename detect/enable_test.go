package detect_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vigilhq/vigil"
)

// A disabled rule raises nothing; enabled again it resumes from its
// watermark, so the events that arrived meanwhile alert then, once.
func TestEngineDisabledRulePausesAndResumes(t *testing.T) {
	h := newHarness(t)
	if err := h.eng.SetEnabled(ruleEvil, false); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.eng.Rules() {
		if r.ID == ruleEvil && r.Enabled {
			t.Fatal("Rules() still says enabled")
		}
	}
	e1 := h.exec(t, "/bin/sh", "sh -c evil one")
	if n := h.run(t); n != 0 {
		t.Fatalf("disabled rule raised %d alerts", n)
	}
	if err := h.eng.SetEnabled(ruleEvil, true); err != nil {
		t.Fatal(err)
	}
	e2 := h.exec(t, "/bin/sh", "sh -c evil two")
	if n := h.run(t); n != 2 {
		t.Fatalf("re-enabled rule raised %d alerts, want 2 (the paused event and the new one)", n)
	}
	if got, want := h.state.eventIDs(ruleEvil), []string{e1, e2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alerts for %v, want %v", got, want)
	}
	if err := h.eng.SetEnabled("no-such-rule", false); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("unknown rule: %v", err)
	}
}
