package ingest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vigilhq/vigil"
)

// recordVersion is the first byte of a WAL record. History:
//
//	1: host id, hostname, log type, lines.
const recordVersion = 1

// walRecord is one /log request as the WAL keeps it: what the drainer
// needs to decode it again, exactly as Log would have.
type walRecord struct {
	host    vigil.Host // ID and Hostname only
	logType string
	lines   []json.RawMessage
}

func encodeRecord(host vigil.Host, logType string, lines []json.RawMessage) []byte {
	size := 1 + 4*binary.MaxVarintLen64 + len(host.ID) + len(host.Hostname) + len(logType)
	for _, l := range lines {
		size += binary.MaxVarintLen32 + len(l)
	}
	b := make([]byte, 0, size)
	b = append(b, recordVersion)
	b = appendBytes(b, []byte(host.ID))
	b = appendBytes(b, []byte(host.Hostname))
	b = appendBytes(b, []byte(logType))
	b = binary.AppendUvarint(b, uint64(len(lines)))
	for _, l := range lines {
		b = appendBytes(b, l)
	}
	return b
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errRecord = errors.New("ingest: bad WAL record")

// decodeRecord decodes what encodeRecord produced. The lines alias b.
func decodeRecord(b []byte) (walRecord, error) {
	var r walRecord
	if len(b) == 0 || b[0] != recordVersion {
		return r, fmt.Errorf("%w: unknown version", errRecord)
	}
	b = b[1:]
	next := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: truncated %s", errRecord, what)
		}
		s := b[k : k+int(n)]
		b = b[k+int(n):]
		return s, nil
	}
	id, err := next("host id")
	if err != nil {
		return r, err
	}
	name, err := next("hostname")
	if err != nil {
		return r, err
	}
	lt, err := next("log type")
	if err != nil {
		return r, err
	}
	r.host = vigil.Host{ID: string(id), Hostname: string(name)}
	r.logType = string(lt)
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) { // every line takes at least one byte
		return r, fmt.Errorf("%w: bad line count", errRecord)
	}
	b = b[k:]
	r.lines = make([]json.RawMessage, 0, n)
	for i := range n {
		l, err := next(fmt.Sprintf("line %d", i))
		if err != nil {
			return r, err
		}
		r.lines = append(r.lines, json.RawMessage(l))
	}
	if len(b) != 0 {
		return r, fmt.Errorf("%w: %d bytes after the lines", errRecord, len(b))
	}
	return r, nil
}
