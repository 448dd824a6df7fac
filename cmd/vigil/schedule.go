package main

import (
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/agent"
	"github.com/vigilhq/vigil/osquery"
)

// defaultConfig serves agent.DefaultConfig to every host until packs and
// labels take over.
func defaultConfig(eventEvery time.Duration) func(vigil.Host) osquery.Config {
	return func(vigil.Host) osquery.Config { return agent.DefaultConfig(eventEvery) }
}
