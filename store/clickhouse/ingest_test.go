package clickhouse_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/ingest"
	"github.com/vigilhq/vigil/store/clickhouse"
)

// TestIngestEndToEnd: osquery lines through ingest into ClickHouse, then
// queried back; a replayed request is stored once.
func TestIngestEndToEnd(t *testing.T) {
	s := open(t, clickhouse.Options{})
	ing := ingest.New(ingest.Options{Appender: s})
	host := vigil.Host{ID: "h-vagrant", Hostname: "vagrant"}
	lines := []json.RawMessage{
		json.RawMessage(`{"action":"added","columns":{"uid":"0","time":"1527895541","pid":"30219","path":"/usr/bin/curl","auid":"1000","cmdline":"curl google.com","ctime":"1503452096","cwd":"","egid":"0","euid":"0","gid":"0","parent":""},"unixTime":1527895550,"hostIdentifier":"vagrant","name":"process_events","numerics":false}`),
		json.RawMessage(`{"action":"added","columns":{"time":"1527895541","status":"succeeded","remote_port":"80","action":"connect","auid":"1000","family":"2","local_address":"","local_port":"0","path":"/usr/bin/curl","pid":"30220","remote_address":"172.217.164.110"},"unixTime":1527895545,"hostIdentifier":"vagrant","name":"socket_events","numerics":false}`),
	}
	ctx := context.Background()
	for range 2 {
		if err := ing.Log(ctx, host, "result", lines); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Query(ctx, `SELECT p.process_command_line, n.destination_ip, n.destination_port, p.hostname
		FROM process_creation p CROSS JOIN network_connection n WHERE p.host_id = ?`, host.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 {
		t.Fatalf("rows %v, want 1", r.Rows)
	}
	if got := r.Rows[0]; got[0] != "curl google.com" || got[1] != "172.217.164.110" || got[2] != int64(80) || got[3] != "vagrant" {
		t.Errorf("row %v", got)
	}
	r, err = s.Query(ctx, "SELECT count() FROM query_results WHERE query_name IN ('process_events', 'socket_events')")
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0] != int64(2) {
		t.Errorf("query_results rows: %v, want 2", r.Rows[0][0])
	}
}
