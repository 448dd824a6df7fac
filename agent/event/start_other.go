//go:build !linux

package event

import "context"

// platformStarters has no source on this platform.
func platformStarters() starters { return starters{} }

func startPlatform(ctx context.Context, m *Manager, sink Sink, want map[string]bool, stateDir string) {
	if len(want) == 0 {
		return
	}
	m.fail(Stats{Source: "none", Error: ErrUnsupported.Error()})
	m.log.Warn("events: no event source on this platform; event tables stay empty", "err", ErrUnsupported)
}
