// Package rules holds Vigil's default Sigma rules, embedded in the binary.
// Each *.yml file is one rule written by the Vigil authors; detect loads
// them with Engine.Load(rules.FS, "."). It holds data only and may be
// imported by anything that needs the defaults (cmd/vigil, tests).
package rules

import "embed"

// FS holds the default rules at its root.
//
//go:embed *.yml
var FS embed.FS
