package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/store/clickhouse"
)

// rowsRead runs q on the test server and returns how many rows it read.
func rowsRead(t *testing.T, db, q string) int64 {
	t.Helper()
	resp, err := http.Post(server.URL+"/?database="+url.QueryEscape(db), "text/plain", strings.NewReader(q+" FORMAT JSON"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Statistics struct {
			RowsRead int64 `json:"rows_read"`
		} `json:"statistics"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %s", q, body)
	}
	return r.Statistics.RowsRead
}

// TestPrimaryKeyPrunes: the duplicate check's time range and detection's
// seq watermark both read a small part of a big table, not all of it.
func TestPrimaryKeyPrunes(t *testing.T) {
	s := open(t, clickhouse.Options{})
	ctx := context.Background()
	const days, perDay = 6, 20_000
	base := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	for d := range days {
		var b vigil.Batch
		for i := range perDay {
			b.Events = append(b.Events, vigil.Event{ID: fmt.Sprintf("%d-%d", d, i), Table: "process_creation", HostID: "h",
				Time: base.Add(time.Duration(d)*24*time.Hour + time.Duration(i%3600)*time.Second)})
		}
		if err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Query(ctx, "SELECT currentDatabase()")
	if err != nil {
		t.Fatal(err)
	}
	db := r.Rows[0][0].(string)
	total := int64(days * perDay)
	day3 := base.Add(3 * 24 * time.Hour)
	byTime := rowsRead(t, db, fmt.Sprintf("SELECT count() FROM process_creation WHERE event_time BETWEEN toDateTime('%s', 'UTC') AND toDateTime('%s', 'UTC')",
		day3.Format("2006-01-02 15:04:05"), day3.Add(30*time.Minute).Format("2006-01-02 15:04:05")))
	bySeq := rowsRead(t, db, fmt.Sprintf("SELECT count() FROM process_creation WHERE seq > %d", total-perDay))
	t.Logf("of %d rows: a 30-minute range read %d, the newest day by seq read %d", total, byTime, bySeq)
	if byTime > total/3 || bySeq > total/3 {
		t.Errorf("the primary key did not prune: time range read %d, seq watermark read %d of %d rows", byTime, bySeq, total)
	}
}
