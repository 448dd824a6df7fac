package ingest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/vigilhq/vigil"
)

// FuzzDecodeRecord: no WAL record bytes panic the decoder, and every
// encoded request decodes back to itself.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("h1", "web1", "result", []byte(`{"name":"q"}`), []byte{})
	f.Add("", "", "status", []byte{}, []byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, id, hostname, logType string, line1, line2 []byte) {
		lines := []json.RawMessage{line1, line2}
		enc := encodeRecord(vigil.Host{ID: id, Hostname: hostname}, logType, lines)
		r, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("decoding an encoded record: %v", err)
		}
		if r.host.ID != id || r.host.Hostname != hostname || r.logType != logType || len(r.lines) != 2 ||
			!bytes.Equal(r.lines[0], line1) || !bytes.Equal(r.lines[1], line2) {
			t.Fatalf("round trip: %+v", r)
		}
		// Arbitrary bytes: an error or a record, never a panic.
		_, _ = decodeRecord(line1)
		for cut := range enc {
			if _, err := decodeRecord(enc[:cut]); err == nil && cut < len(enc) {
				t.Fatalf("a record cut at %d of %d decoded", cut, len(enc))
			}
		}
	})
}
