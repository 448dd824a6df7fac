package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/osquery"
)

// Per-host statuses of a live-query campaign. pending: waiting for the
// host to ask; sent: handed to the host, waiting for its answer; the rest
// are final.
const (
	StatusPending = "pending"
	StatusSent    = "sent"
	StatusOK      = "ok"
	StatusError   = "error"
	StatusOffline = "offline"
	StatusTimeout = "timeout"
)

// FinalStatus reports whether a host status is final.
func FinalStatus(s string) bool {
	switch s {
	case StatusOK, StatusError, StatusOffline, StatusTimeout:
		return true
	}
	return false
}

// CampaignHost is one target host of a campaign.
type CampaignHost struct {
	HostID   string `json:"host_id"`
	Hostname string `json:"hostname"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	RowCount int    `json:"row_count"`
	// Columns is the order of the rows' columns (the SELECT's, as the
	// host sent them), when known; rows marshal with their keys in it.
	Columns   []string            `json:"columns,omitempty"`
	Rows      []map[string]string `json:"rows,omitempty"`
	UpdatedAt time.Time           `json:"updated_at"`
}

// MarshalJSON writes the host as its fields' tags say, with each row's
// keys in Columns' order (then any other key, sorted). It writes the
// bytes itself, escaped as encoding/json would: a campaign to 10,000
// hosts is 10,000 of them.
func (h CampaignHost) MarshalJSON() ([]byte, error) {
	t, err := h.UpdatedAt.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 160)
	b = append(b, `{"host_id":`...)
	b = osquery.AppendString(b, h.HostID)
	b = append(b, `,"hostname":`...)
	b = osquery.AppendString(b, h.Hostname)
	b = append(b, `,"status":`...)
	b = osquery.AppendString(b, h.Status)
	if h.Error != "" {
		b = append(b, `,"error":`...)
		b = osquery.AppendString(b, h.Error)
	}
	b = append(b, `,"row_count":`...)
	b = strconv.AppendInt(b, int64(h.RowCount), 10)
	if len(h.Columns) > 0 {
		b = append(b, `,"columns":`...)
		b = osquery.AppendStrings(b, h.Columns)
	}
	if len(h.Rows) > 0 {
		b = append(b, `,"rows":`...)
		b = osquery.AppendRows(b, h.Rows, h.Columns)
	}
	b = append(b, `,"updated_at":`...)
	b = append(b, t...)
	return append(b, '}'), nil
}

// Summary counts a campaign's hosts by status.
type Summary struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Error   int `json:"error"`
	Timeout int `json:"timeout"`
	Offline int `json:"offline"`
	Pending int `json:"pending"` // pending or sent
}

func (s *Summary) add(status string) {
	s.Total++
	switch status {
	case StatusOK:
		s.OK++
	case StatusError:
		s.Error++
	case StatusTimeout:
		s.Timeout++
	case StatusOffline:
		s.Offline++
	default:
		s.Pending++
	}
}

// Campaign is a live query sent to a set of hosts, kept after it ends.
type Campaign struct {
	ID          string         `json:"id"`
	SQL         string         `json:"sql"`
	Actor       string         `json:"actor"`
	CreatedAt   time.Time      `json:"created_at"`
	Deadline    time.Time      `json:"deadline"`
	CompletedAt time.Time      `json:"completed_at,omitzero"`
	Done        bool           `json:"done"`
	Summary     Summary        `json:"summary"`
	Hosts       []CampaignHost `json:"hosts,omitempty"`
}

// CreateCampaign stores a new campaign with its target hosts (each with
// its initial status, pending or offline) and, in the same transaction,
// the audit entry that records who started it; a campaign never exists
// without its audit record. An empty ID is assigned. A campaign with no
// pending host is complete at once.
func (db *DB) CreateCampaign(ctx context.Context, c Campaign, audit *AuditEntry) (Campaign, error) {
	if c.SQL == "" || len(c.Hosts) == 0 {
		return Campaign{}, fmt.Errorf("state: a campaign needs SQL and at least one host: %w", vigil.ErrInvalid)
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = db.now()
	}
	c.Summary = Summary{}
	for i := range c.Hosts {
		if c.Hosts[i].Status == "" {
			c.Hosts[i].Status = StatusPending
		}
		if c.Hosts[i].UpdatedAt.IsZero() {
			c.Hosts[i].UpdatedAt = c.CreatedAt
		}
		c.Summary.add(c.Hosts[i].Status)
	}
	if c.Summary.Pending == 0 {
		c.Done, c.CompletedAt = true, c.CreatedAt
	}
	// Tracked from before the commit: no answer can find it untracked.
	tracked := db.journal != nil && c.Summary.Pending > 0
	if tracked {
		db.journal.track(c)
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO campaigns (id, sql, actor, created_at, deadline, completed_at)
			VALUES (?, ?, ?, ?, ?, ?)`, c.ID, c.SQL, c.Actor, ts(c.CreatedAt), ts(c.Deadline), ts(c.CompletedAt)); err != nil {
			return err
		}
		if err := insertCampaignHosts(ctx, tx, c); err != nil {
			return err
		}
		if audit != nil {
			return appendAudit(ctx, tx, *audit, db.now())
		}
		return nil
	})
	if err != nil {
		if tracked {
			db.journal.forget(c.ID)
		}
		return Campaign{}, fmt.Errorf("state: creating campaign: %w", err)
	}
	return c, nil
}

// campaignHostsPerInsert is how many target rows one INSERT carries: at
// 10,000 hosts a statement per row made the campaign's creation (which
// the live query waits for) take 170 ms of SQLite, and as many round
// trips to PostgreSQL. 6 parameters a row stay far below both databases'
// limits.
const campaignHostsPerInsert = 250

const insertCampaignHostSQL = `INSERT INTO campaign_hosts (campaign_id, host_id, hostname, status, error, updated_at) VALUES `

func insertCampaignHosts(ctx context.Context, tx *sql.Tx, c Campaign) error {
	hosts := c.Hosts
	args := make([]any, 0, 6*campaignHostsPerInsert)
	if len(hosts) >= campaignHostsPerInsert {
		q := insertCampaignHostSQL + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", campaignHostsPerInsert), ", ")
		many, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer many.Close()
		for len(hosts) >= campaignHostsPerInsert {
			args = args[:0]
			for _, h := range hosts[:campaignHostsPerInsert] {
				args = append(args, c.ID, h.HostID, h.Hostname, h.Status, h.Error, ts(h.UpdatedAt))
			}
			if _, err := many.ExecContext(ctx, args...); err != nil {
				return err
			}
			hosts = hosts[campaignHostsPerInsert:]
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	one, err := tx.PrepareContext(ctx, insertCampaignHostSQL+`(?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer one.Close()
	for _, h := range hosts {
		if _, err := one.ExecContext(ctx, c.ID, h.HostID, h.Hostname, h.Status, h.Error, ts(h.UpdatedAt)); err != nil {
			return err
		}
	}
	return nil
}

// TakePendingQueries returns the queries waiting for a host (campaign id
// -> SQL) of campaigns still running at now, and marks them sent, so each
// is handed out once.
func (db *DB) TakePendingQueries(ctx context.Context, hostID string, now time.Time) (map[string]string, error) {
	// A cheap read first: almost every distributed/read finds nothing, and
	// must not take the write lock to learn it.
	var n int
	stmt, err := db.prepared(ctx, db.r, `SELECT count(*) FROM campaign_hosts WHERE host_id = ? AND status = ?`)
	if err != nil {
		return nil, fmt.Errorf("state: reading pending queries of %q: %w", hostID, err)
	}
	if err := stmt.QueryRowContext(ctx, hostID, StatusPending).Scan(&n); err != nil {
		return nil, fmt.Errorf("state: reading pending queries of %q: %w", hostID, err)
	}
	if n == 0 {
		return nil, nil
	}
	q, err := db.claim(ctx, hostID, now)
	if j := db.journal; j != nil {
		for id := range q {
			if j.answered(id, hostID) { // its answer is not folded yet
				delete(q, id)
			}
		}
	}
	return q, err
}

// PendingHosts returns the hosts with a query waiting for them (pending)
// in a campaign not yet complete: the only hosts whose distributed/read
// needs to ask the state. Deadlines are not looked at: a host listed
// that should not be asks once for nothing.
func (db *DB) PendingHosts(ctx context.Context) ([]string, error) {
	out, err := db.queryStrings(ctx, `SELECT DISTINCT ch.host_id FROM campaigns c
		JOIN campaign_hosts ch ON ch.campaign_id = c.id WHERE c.completed_at = 0 AND ch.status = ?`, StatusPending)
	if err != nil {
		return nil, fmt.Errorf("state: listing hosts with pending queries: %w", err)
	}
	return out, nil
}

// Result is one host's answer to a campaign.
type Result struct {
	Status string // StatusOK or StatusError
	Error  string
	Rows   []map[string]string
	// Columns is the rows' column order, when the host's answer gave one
	// (osquery.DistributedWriteRequest.Columns); stored with the rows.
	Columns []string
	Time    time.Time
}

// RecordResult stores a host's answer if the host is a target of the
// campaign still waiting for one (pending or sent); otherwise (unknown
// campaign, not a target, already answered or timed out) it records
// nothing and returns recorded false. completed is true when this answer
// was the last one the campaign waited for. Answers arriving together are
// written in one transaction (see results.go); RecordResult returns once
// its answer is committed.
func (db *DB) RecordResult(ctx context.Context, campaignID, hostID string, r Result) (recorded, completed bool, err error) {
	if r.Status != StatusOK && r.Status != StatusError {
		return false, false, fmt.Errorf("state: result status %q: %w", r.Status, vigil.ErrInvalid)
	}
	if r.Time.IsZero() {
		r.Time = db.now()
	}
	var rowsJSON, columnsJSON any // NULL for errors, and for no column order
	if r.Status == StatusOK {
		rows := r.Rows
		if rows == nil {
			rows = []map[string]string{}
		}
		// In column order: the stored JSON reads in the SELECT's order too.
		rowsJSON = string(osquery.AppendRows(nil, rows, r.Columns))
		if len(r.Columns) > 0 {
			columnsJSON = string(osquery.AppendStrings(nil, r.Columns))
		}
	} else {
		r.Columns = nil
	}
	q := &resultReq{campaignID: campaignID, hostID: hostID, r: r, rowsJSON: rowsJSON, columnsJSON: columnsJSON, rowCount: len(r.Rows)}
	if j := db.journal; j != nil {
		handled, err := j.record(ctx, q)
		if err != nil {
			return false, false, fmt.Errorf("state: recording result of %q for campaign %q: %w", hostID, campaignID, err)
		}
		if handled {
			return q.recorded, q.completed, nil
		}
		// Not tracked: SQLite decides, once it has every answer journaled.
		if err := j.settle(ctx); err != nil {
			return false, false, err
		}
	}
	if err := db.submitResult(ctx, q); err != nil {
		return false, false, fmt.Errorf("state: recording result of %q for campaign %q: %w", hostID, campaignID, err)
	}
	return q.recorded, q.completed, nil
}

// lockCampaign serialises the transactions that may complete a campaign.
// Under PostgreSQL's read committed, two hosts answering at once would
// each see the other still pending and neither would complete it; a no-op
// UPDATE takes the row lock. SQLite has one writer: nothing to do.
func (db *DB) lockCampaign(ctx context.Context, tx *sql.Tx, id string) error {
	if db.dialect != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE campaigns SET completed_at = completed_at WHERE id = ?`, id)
	return err
}

func completeIfDone(ctx context.Context, tx *sql.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE campaigns SET completed_at = ? WHERE id = ? AND completed_at = 0
		AND NOT EXISTS (SELECT 1 FROM campaign_hosts WHERE campaign_id = ? AND status IN (?, ?))`,
		ts(now), id, id, StatusPending, StatusSent)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ExpireCampaign marks every host still waiting as timed out and the
// campaign complete. It returns the hosts it timed out; completed is false
// when the campaign was already complete (then nothing changes).
func (db *DB) ExpireCampaign(ctx context.Context, id string, now time.Time) (timedOut []CampaignHost, completed bool, err error) {
	if j := db.journal; j != nil {
		// Answers journaled before the deadline count: fold them first.
		j.closeCampaign(id)
		defer j.forget(id)
		if err := j.settle(ctx); err != nil {
			return nil, false, fmt.Errorf("state: expiring campaign %q: %w", id, err)
		}
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if err := db.lockCampaign(ctx, tx, id); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT host_id, hostname FROM campaign_hosts WHERE campaign_id = ? AND status IN (?, ?)
			ORDER BY hostname, host_id`, id, StatusPending, StatusSent)
		if err != nil {
			return err
		}
		for rows.Next() {
			h := CampaignHost{Status: StatusTimeout, UpdatedAt: now}
			if err := rows.Scan(&h.HostID, &h.Hostname); err != nil {
				rows.Close()
				return err
			}
			timedOut = append(timedOut, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE campaign_hosts SET status = ?, error = ?, updated_at = ?
			WHERE campaign_id = ? AND status IN (?, ?)`,
			StatusTimeout, "no answer before the campaign's deadline", ts(now), id, StatusPending, StatusSent); err != nil {
			return err
		}
		completed, err = completeIfDone(ctx, tx, id, now)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("state: expiring campaign %q: %w", id, err)
	}
	if !completed {
		timedOut = nil
	}
	for i := range timedOut {
		timedOut[i].Error = "no answer before the campaign's deadline"
	}
	return timedOut, completed, nil
}

// OpenCampaigns returns the campaigns not yet complete (without hosts),
// oldest first, so that a restarted server can time them out.
func (db *DB) OpenCampaigns(ctx context.Context) ([]Campaign, error) {
	return db.listCampaigns(ctx, `WHERE completed_at = 0 ORDER BY created_at`, 1_000_000)
}

// ListCampaigns returns the latest campaigns, newest first, with their
// summaries but without hosts.
func (db *DB) ListCampaigns(ctx context.Context, limit int) ([]Campaign, error) {
	if limit <= 0 {
		limit = 100
	}
	return db.listCampaigns(ctx, `ORDER BY created_at DESC, id`, limit)
}

func (db *DB) listCampaigns(ctx context.Context, tail string, limit int) ([]Campaign, error) {
	if err := db.settle(ctx); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, sql, actor, created_at, deadline, completed_at FROM campaigns `+tail+` LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: listing campaigns: %w", err)
	}
	var out []Campaign
	for rows.Next() {
		c, err := scanCampaign(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("state: listing campaigns: %w", err)
		}
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: listing campaigns: %w", err)
	}
	for i := range out {
		s, err := db.summary(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Summary = s
	}
	return out, nil
}

func scanCampaign(s scanner) (Campaign, error) {
	var c Campaign
	var created, deadline, completed int64
	if err := s.Scan(&c.ID, &c.SQL, &c.Actor, &created, &deadline, &completed); err != nil {
		return Campaign{}, err
	}
	c.CreatedAt, c.Deadline, c.CompletedAt = fromTS(created), fromTS(deadline), fromTS(completed)
	c.Done = completed != 0
	return c, nil
}

func (db *DB) summary(ctx context.Context, id string) (Summary, error) {
	if j := db.journal; j != nil {
		if s, ok := j.summary(id); ok {
			return s, nil
		}
		if err := j.settle(ctx); err != nil {
			return Summary{}, err
		}
	}
	rows, err := db.r.QueryContext(ctx, `SELECT status, count(*) FROM campaign_hosts WHERE campaign_id = ? GROUP BY status`, id)
	if err != nil {
		return Summary{}, fmt.Errorf("state: summarising campaign %q: %w", id, err)
	}
	defer rows.Close()
	var s Summary
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return Summary{}, fmt.Errorf("state: summarising campaign %q: %w", id, err)
		}
		for range n {
			s.add(st)
		}
	}
	return s, rows.Err()
}

// GetCampaign returns a campaign with every target host, its status and
// its rows. Hosts are ordered by when they last changed, then hostname, so
// a replay shows answers in the order they came.
func (db *DB) GetCampaign(ctx context.Context, id string) (Campaign, error) {
	if err := db.settle(ctx); err != nil {
		return Campaign{}, err
	}
	c, err := scanCampaign(db.r.QueryRowContext(ctx, `SELECT id, sql, actor, created_at, deadline, completed_at FROM campaigns WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Campaign{}, fmt.Errorf("state: campaign %q: %w", id, vigil.ErrNotFound)
	}
	if err != nil {
		return Campaign{}, fmt.Errorf("state: reading campaign %q: %w", id, err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT host_id, hostname, status, error, rows_json, columns_json, row_count, updated_at
		FROM campaign_hosts WHERE campaign_id = ? ORDER BY updated_at, hostname, host_id`, id)
	if err != nil {
		return Campaign{}, fmt.Errorf("state: reading campaign %q: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h CampaignHost
		var rj, cj sql.NullString
		var updated int64
		if err := rows.Scan(&h.HostID, &h.Hostname, &h.Status, &h.Error, &rj, &cj, &h.RowCount, &updated); err != nil {
			return Campaign{}, fmt.Errorf("state: reading campaign %q: %w", id, err)
		}
		h.UpdatedAt = fromTS(updated)
		if err := decodeHostRows(&h, rj, cj); err != nil {
			return Campaign{}, fmt.Errorf("state: campaign %q host %q: %w", id, h.HostID, err)
		}
		c.Summary.add(h.Status)
		c.Hosts = append(c.Hosts, h)
	}
	if err := rows.Err(); err != nil {
		return Campaign{}, fmt.Errorf("state: reading campaign %q: %w", id, err)
	}
	return c, nil
}

// CampaignSummary counts a campaign's hosts by status.
func (db *DB) CampaignSummary(ctx context.Context, id string) (Summary, error) {
	return db.summary(ctx, id)
}

// CampaignHost returns one target host of a campaign with its rows.
func (db *DB) CampaignHost(ctx context.Context, campaignID, hostID string) (CampaignHost, error) {
	if err := db.settle(ctx); err != nil {
		return CampaignHost{}, err
	}
	var h CampaignHost
	var rj, cj sql.NullString
	var updated int64
	err := db.r.QueryRowContext(ctx, `SELECT host_id, hostname, status, error, rows_json, columns_json, row_count, updated_at
		FROM campaign_hosts WHERE campaign_id = ? AND host_id = ?`, campaignID, hostID).
		Scan(&h.HostID, &h.Hostname, &h.Status, &h.Error, &rj, &cj, &h.RowCount, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return CampaignHost{}, fmt.Errorf("state: host %q of campaign %q: %w", hostID, campaignID, vigil.ErrNotFound)
	}
	if err != nil {
		return CampaignHost{}, fmt.Errorf("state: reading host %q of campaign %q: %w", hostID, campaignID, err)
	}
	h.UpdatedAt = fromTS(updated)
	if err := decodeHostRows(&h, rj, cj); err != nil {
		return CampaignHost{}, fmt.Errorf("state: campaign %q host %q: %w", campaignID, hostID, err)
	}
	return h, nil
}

// decodeHostRows reads a host's stored rows and column order (both NULL
// for an error or no answer yet; columns NULL for answers stored before
// column order was kept, or without rows).
func decodeHostRows(h *CampaignHost, rj, cj sql.NullString) error {
	if rj.Valid {
		if err := json.Unmarshal([]byte(rj.String), &h.Rows); err != nil {
			return fmt.Errorf("decoding rows: %w", err)
		}
		if h.Rows == nil {
			h.Rows = []map[string]string{}
		}
	}
	if cj.Valid {
		if err := json.Unmarshal([]byte(cj.String), &h.Columns); err != nil {
			return fmt.Errorf("decoding columns: %w", err)
		}
	}
	return nil
}
