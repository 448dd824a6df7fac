package agent

import (
	"time"

	"github.com/vigilhq/vigil/osquery"
)

// DefaultConfig is the configuration a Vigil server serves until an
// operator sets packs of their own, and what the idle-agent benchmark runs:
// the event tables that feed detection every eventEvery, and a light
// inventory once an hour.
func DefaultConfig(eventEvery time.Duration) osquery.Config {
	every := int(eventEvery / time.Second)
	if every < 1 {
		every = 1
	}
	f := false
	return osquery.Config{
		Options: map[string]any{
			"schedule_epoch":       0,
			"events_expiry":        3600,
			"events_max":           50000,
			"distributed_interval": 10,
		},
		// File integrity monitoring of system configuration, as osquery's FIM
		// file_paths: %% is recursive.
		FilePaths: map[string][]string{"etc": {"/etc/%%"}},
		Schedule: map[string]osquery.ScheduledQuery{
			"process_events":  {Query: "SELECT * FROM process_events", Interval: every, Removed: &f},
			"socket_events":   {Query: "SELECT * FROM socket_events", Interval: every, Removed: &f},
			"user_events":     {Query: "SELECT * FROM user_events", Interval: every, Removed: &f},
			"file_events":     {Query: "SELECT * FROM file_events", Interval: every, Removed: &f},
			"system_info":     {Query: "SELECT * FROM system_info", Interval: 3600, Snapshot: true},
			"os_version":      {Query: "SELECT * FROM os_version", Interval: 3600, Snapshot: true},
			"listening_ports": {Query: "SELECT pid, port, protocol, family, address FROM listening_ports", Interval: 3600},
			"users":           {Query: "SELECT uid, gid, username, shell, directory FROM users", Interval: 3600},
		},
	}
}
