// Package dashboards holds Grafana dashboards for Vigil as JSON, ready to
// import: vigil-server.json over the Prometheus metrics of package
// metrics, vigil-events-clickhouse.json over the ClickHouse event store.
// FS embeds them so the server or the console can offer them for
// download; the tests check them against the metrics registry and the
// event schema. See README.md for importing.
package dashboards

import "embed"

// FS holds every dashboard (*.json) at its root.
//
//go:embed *.json
var FS embed.FS
