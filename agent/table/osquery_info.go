package table

import (
	"os"
	"runtime"

	"github.com/vigilhq/vigil"
)

var osqueryInfoTable = &tableDef{schema: osqueryInfoSchema, gen: genOsqueryInfo}

// osqueryInfoSchema is specs/utility/osquery_info.table (Linux columns).
var osqueryInfoSchema = Schema{
	Name:        "osquery_info",
	Description: "Top level information about the running version of osquery.",
	Columns: []Column{
		{Name: "pid", Type: TypeInteger},
		{Name: "uuid", Type: TypeText, Collate: "nocase"},
		{Name: "instance_id", Type: TypeText},
		{Name: "version", Type: TypeText, Collate: "version"},
		{Name: "config_hash", Type: TypeText, Collate: "nocase"},
		{Name: "config_valid", Type: TypeInteger},
		{Name: "extensions", Type: TypeText},
		{Name: "build_platform", Type: TypeText},
		{Name: "build_distro", Type: TypeText},
		{Name: "start_time", Type: TypeInteger},
		{Name: "watcher", Type: TypeInteger},
		{Name: "platform_mask", Type: TypeInteger},
	},
}

// platformMask is osquery's PlatformType bitmask for this build
// (POSIX 0x01 | LINUX 0x08, ...).
func platformMask() int {
	switch runtime.GOOS {
	case "linux":
		return 0x01 | 0x08
	case "darwin":
		return 0x01 | 0x10
	case "windows":
		return 0x02
	case "freebsd":
		return 0x01 | 0x04 | 0x20
	}
	return 0x01
}

func genOsqueryInfo(q *queryCtx) ([]Row, error) {
	var info AgentInfo
	if q.e.opts.Info != nil {
		info = q.e.opts.Info()
	}
	if info.Version == "" {
		info.Version = vigil.Version
	}
	if info.PID == 0 {
		info.PID = os.Getpid()
	}
	if info.BuildPlatform == "" {
		info.BuildPlatform = runtime.GOOS
	}
	if info.Extensions == "" {
		info.Extensions = "inactive"
	}
	watcher := info.Watcher
	if watcher == 0 {
		watcher = -1 // osquery's value when no watcher process runs
	}
	return []Row{{
		"pid":            info.PID,
		"uuid":           info.UUID,
		"instance_id":    info.InstanceID,
		"version":        info.Version,
		"config_hash":    info.ConfigHash,
		"config_valid":   info.ConfigValid,
		"extensions":     info.Extensions,
		"build_platform": info.BuildPlatform,
		"build_distro":   runtime.GOOS + "-" + runtime.GOARCH,
		"start_time":     info.StartTime,
		"watcher":        watcher,
		"platform_mask":  platformMask(),
	}}, nil
}
