// Package kafka puts Kafka between ingest and the store, with franz-go.
// Producer is a store.Appender for ingest: it writes every row of a batch
// as one JSON record and returns once the brokers acknowledged them all
// (acks=all, idempotent producer). Consumer reads the topic in a consumer
// group, appends what it polled to the real store.Appender (DuckDB or
// ClickHouse) as one batch and commits the offsets only after the store
// confirmed, so every row reaches the store at least once and its event
// id makes the store's copy exactly once. cmd/vigil wires both; nothing
// else imports this package.
//
// Record format (value; the key is the host id, so one host's rows stay in
// order on one partition), version 1:
//
//	{"v":1,"kind":"event","id":"…","table":"process_creation","host_id":"…","time":"RFC 3339","fields":{…}}
//	{"v":1,"kind":"result","id":"…","host_id":"…","hostname":"…","query":"…","action":"added","time":"RFC 3339","epoch":1,"counter":7,"columns":{…}}
//
// Plain JSON so that other consumers (a SIEM, a data lake loader) can read
// the topic without Vigil.
package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
)

// Version is the record format version.
const Version = 1

// Record kinds.
const (
	KindEvent  = "event"
	KindResult = "result"
)

type record struct {
	V      int       `json:"v"`
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Table  string    `json:"table,omitempty"`
	HostID string    `json:"host_id"`
	Time   time.Time `json:"time"`
	// Hostname, Epoch and Counter of result rows; added within version 1
	// (older records lack them and decode with zero values).
	Hostname string            `json:"hostname,omitempty"`
	Epoch    int64             `json:"epoch,omitempty"`
	Counter  int64             `json:"counter,omitempty"`
	Fields   map[string]any    `json:"fields,omitempty"`
	Query    string            `json:"query,omitempty"`
	Action   string            `json:"action,omitempty"`
	Columns  map[string]string `json:"columns,omitempty"`
}

// EncodeEvent encodes one event as a record value.
func EncodeEvent(e vigil.Event) ([]byte, error) {
	b, err := json.Marshal(record{V: Version, Kind: KindEvent, ID: e.ID, Table: e.Table, HostID: e.HostID, Time: e.Time.UTC(), Fields: e.Fields})
	if err != nil {
		return nil, fmt.Errorf("kafka: encoding event %s: %w: %w", e.ID, err, vigil.ErrInvalid)
	}
	return b, nil
}

// EncodeResult encodes one raw result row as a record value.
func EncodeResult(r vigil.ResultRow) ([]byte, error) {
	b, err := json.Marshal(record{V: Version, Kind: KindResult, ID: r.ID, HostID: r.HostID, Time: r.Time.UTC(),
		Hostname: r.Hostname, Epoch: r.Epoch, Counter: r.Counter, Query: r.Query, Action: r.Action, Columns: r.Columns})
	if err != nil {
		return nil, fmt.Errorf("kafka: encoding result %s: %w: %w", r.ID, err, vigil.ErrInvalid)
	}
	return b, nil
}

// ErrRecord is wrapped by Decode for a value that is not a record.
var ErrRecord = errors.New("kafka: not a vigil record")

// Decode adds the row a record value holds to b. Event fields get back
// their Go types from the schema: BIGINT columns int64, DOUBLE float64,
// BOOLEAN bool, TIMESTAMP time.Time, VARCHAR string.
func Decode(value []byte, b *vigil.Batch) error {
	var r record
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("%w: %w", ErrRecord, err)
	}
	if r.V != Version {
		return fmt.Errorf("%w: version %d, this binary reads %d", ErrRecord, r.V, Version)
	}
	if r.ID == "" {
		return fmt.Errorf("%w: no id", ErrRecord)
	}
	switch r.Kind {
	case KindResult:
		b.Results = append(b.Results, vigil.ResultRow{ID: r.ID, HostID: r.HostID, Hostname: r.Hostname, Query: r.Query, Action: r.Action,
			Time: r.Time, Epoch: r.Epoch, Counter: r.Counter, Columns: r.Columns})
		return nil
	case KindEvent:
	default:
		return fmt.Errorf("%w: kind %q", ErrRecord, r.Kind)
	}
	t, ok := schema.Lookup(r.Table)
	if !ok {
		return fmt.Errorf("%w: unknown table %q", ErrRecord, r.Table)
	}
	types := make(map[string]schema.Type, len(t.Columns)+len(schema.Common))
	for _, c := range t.AllColumns() {
		types[c.Name] = c.Type
	}
	for k, v := range r.Fields {
		typ, ok := types[k]
		if !ok {
			return fmt.Errorf("%w: %q is not a column of %s", ErrRecord, k, r.Table)
		}
		cv, err := fromJSON(typ, v)
		if err != nil {
			return fmt.Errorf("%w: field %s: %w", ErrRecord, k, err)
		}
		r.Fields[k] = cv
	}
	b.Events = append(b.Events, vigil.Event{ID: r.ID, Table: r.Table, HostID: r.HostID, Time: r.Time, Fields: r.Fields})
	return nil
}

func fromJSON(typ schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case schema.BigInt:
		if n, ok := v.(json.Number); ok {
			return strconv.ParseInt(string(n), 10, 64)
		}
	case schema.Double:
		if n, ok := v.(json.Number); ok {
			return strconv.ParseFloat(string(n), 64)
		}
	case schema.Bool:
		if x, ok := v.(bool); ok {
			return x, nil
		}
	case schema.Timestamp:
		if s, ok := v.(string); ok {
			return time.Parse(time.RFC3339Nano, s)
		}
	case schema.Text:
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return string(x), nil
		}
	}
	return nil, fmt.Errorf("%T is not a %s", v, typ)
}
