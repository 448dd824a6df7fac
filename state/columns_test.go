package state

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/state/pgtest"
)

// A live query's answer keeps its SELECT's column order: stored with the
// rows, returned with the campaign and its hosts, and written out in that
// order.
func testCampaignColumnOrder(t *testing.T, db *DB) {
	ctx := context.Background()
	a, _ := enroll(t, db, "a", "")
	b, _ := enroll(t, db, "b", "")
	c, _ := enroll(t, db, "c", "")
	now := time.Now()
	camp, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT pid, name, cmdline FROM processes", Actor: "alice",
		CreatedAt: now, Deadline: now.Add(time.Minute),
		Hosts: []CampaignHost{{HostID: a.ID, Hostname: "a"}, {HostID: b.ID, Hostname: "b"}, {HostID: c.ID, Hostname: "c"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"pid", "name", "cmdline"}
	rows := []map[string]string{{"pid": "1", "name": "init", "cmdline": "/sbin/init"}, {"pid": "2", "name": "kthreadd", "cmdline": ""}}
	if rec, _, err := db.RecordResult(ctx, camp.ID, a.ID, Result{Status: StatusOK, Rows: rows, Columns: cols}); err != nil || !rec {
		t.Fatalf("RecordResult a: %v %v", rec, err)
	}
	// An answer without column order (a plain map from somewhere) and an
	// error: neither has columns.
	if _, _, err := db.RecordResult(ctx, camp.ID, b.ID, Result{Status: StatusOK, Rows: []map[string]string{{"z": "1", "a": "2"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.RecordResult(ctx, camp.ID, c.ID, Result{Status: StatusError, Error: "boom", Columns: cols}); err != nil {
		t.Fatal(err)
	}

	h, err := db.CampaignHost(ctx, camp.ID, a.ID)
	if err != nil || !slices.Equal(h.Columns, cols) || len(h.Rows) != 2 || h.Rows[1]["name"] != "kthreadd" {
		t.Fatalf("CampaignHost a = %+v, %v", h, err)
	}
	var stored string
	if err := db.r.QueryRowContext(ctx, `SELECT rows_json FROM campaign_hosts WHERE campaign_id = ? AND host_id = ?`, camp.ID, a.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := `[{"pid":"1","name":"init","cmdline":"/sbin/init"},{"pid":"2","name":"kthreadd","cmdline":""}]`; stored != want {
		t.Errorf("rows_json %s, want %s", stored, want)
	}
	full, err := db.GetCampaign(ctx, camp.ID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]CampaignHost{}
	for _, h := range full.Hosts {
		byID[h.HostID] = h
	}
	if h := byID[a.ID]; !slices.Equal(h.Columns, cols) {
		t.Errorf("GetCampaign host a columns %q", h.Columns)
	}
	if h := byID[b.ID]; h.Columns != nil || h.Rows[0]["z"] != "1" {
		t.Errorf("GetCampaign host b %+v: want rows and no columns", h)
	}
	if h := byID[c.ID]; h.Columns != nil || h.Rows != nil {
		t.Errorf("GetCampaign host c (error) %+v", h)
	}

	// The people API writes campaigns with encoding/json: rows in order.
	out, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"columns":["pid","name","cmdline"],"rows":[{"pid":"1","name":"init","cmdline":"/sbin/init"},`) {
		t.Errorf("campaign JSON %s", out)
	}
	var back Campaign
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	for _, h := range back.Hosts {
		if w := byID[h.HostID]; !slices.Equal(h.Columns, w.Columns) || len(h.Rows) != len(w.Rows) {
			t.Errorf("host %s read back as %+v, want %+v", h.HostID, h, w)
		}
	}
}

func TestCampaignColumnOrder(t *testing.T) { forEachBackend(t, testCampaignColumnOrder) }

// An answer stored before migration 7 reads back with its rows and no
// column order.
func TestColumnsMigrationKeepsOldAnswers(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testColumnsMigration(t, filepath.Join(t.TempDir(), "state.db")) })
	t.Run("postgres", func(t *testing.T) { testColumnsMigration(t, pgtest.URL(t)) })
}

func testColumnsMigration(t *testing.T, dsn string) {
	ctx := context.Background()
	all := migrations
	migrations = all[:6]
	db, err := Open(ctx, dsn, nil)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	h, _ := enroll(t, db, "old", "")
	now := time.Now()
	camp, err := db.CreateCampaign(ctx, Campaign{SQL: "SELECT 1", Actor: "a", CreatedAt: now, Deadline: now.Add(time.Minute),
		Hosts: []CampaignHost{{HostID: h.ID, Hostname: "old"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.ExecContext(ctx, `UPDATE campaign_hosts SET status = ?, rows_json = ?, row_count = 1 WHERE campaign_id = ?`,
		StatusOK, `[{"b":"1","a":"2"}]`, camp.ID); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("migrating: %v", err)
	}
	defer db.Close()
	got, err := db.CampaignHost(ctx, camp.ID, h.ID)
	if err != nil || got.Columns != nil || len(got.Rows) != 1 || got.Rows[0]["b"] != "1" {
		t.Fatalf("old answer after migration: %+v, %v", got, err)
	}
}

// plainHost is CampaignHost without its MarshalJSON.
type plainHost CampaignHost

// CampaignHost writes itself as encoding/json would, but for the order of
// each row's keys: with sorted columns, the very same bytes.
func TestCampaignHostJSONAsEncodingJSON(t *testing.T) {
	rows := []map[string]string{{"a<": "x&y", "b\u2028": "\u2028\xff", "c\"": "é\n"}, nil}
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	for _, h := range []CampaignHost{
		{HostID: "h<1>", Hostname: "web\x01", Status: StatusOK, RowCount: 2, Columns: []string{"a<", "b\u2028", "c\""}, Rows: rows, UpdatedAt: at},
		{HostID: "h", Hostname: "w", Status: StatusOK, Rows: []map[string]string{}},
		{HostID: "h", Hostname: "w", Status: StatusError, Error: "no such table: <x>", UpdatedAt: at},
	} {
		got, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(plainHost(h))
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if _, err := json.Marshal(CampaignHost{UpdatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("a time encoding/json refuses was written")
	}
}

// BenchmarkCampaignJSON: GET /api/v1/queries/{id} of a campaign to 1,000
// hosts answering 2 rows of 5 columns each, before (maps, keys sorted) and
// after (keys in column order).
func BenchmarkCampaignJSON(b *testing.B) {
	cols := []string{"pid", "name", "path", "cmdline", "uid"}
	c := Campaign{ID: "c", SQL: "SELECT pid, name, path, cmdline, uid FROM processes"}
	for i := range 1000 {
		h := CampaignHost{HostID: fmt.Sprint("host-", i), Hostname: fmt.Sprint("web-", i), Status: StatusOK, RowCount: 2,
			Columns: cols, UpdatedAt: time.Now()}
		for r := range 2 {
			row := map[string]string{}
			for _, col := range cols {
				row[col] = fmt.Sprint(col, "-", i, "-", r)
			}
			h.Rows = append(h.Rows, row)
		}
		c.Hosts = append(c.Hosts, h)
	}
	type plainCampaign struct {
		Campaign
		Hosts []plainHost `json:"hosts,omitempty"`
	}
	old := plainCampaign{Campaign: c}
	for _, h := range c.Hosts {
		ph := plainHost(h)
		ph.Columns = nil // not there before
		old.Hosts = append(old.Hosts, ph)
	}
	b.Run("old", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(old); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ordered", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
