//go:build !linux

package event

import "context"

func startPlatform(ctx context.Context, m *Manager, sink Sink, want map[string]bool, stateDir string) {
	if len(want) == 0 {
		return
	}
	m.fail(Stats{Source: "none", Error: ErrUnsupported.Error()})
	m.log.Warn("events: no event source on this platform; event tables stay empty", "err", ErrUnsupported)
}
