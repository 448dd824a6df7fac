package state

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/vigilhq/vigil"
)

// Watermark returns the last seq of table that rule has been evaluated
// over (0 when never).
func (db *DB) Watermark(ctx context.Context, ruleID, table string) (int64, error) {
	var seq int64
	err := db.r.QueryRowContext(ctx, `SELECT seq FROM watermarks WHERE rule_id = ? AND table_name = ?`, ruleID, table).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: reading watermark of %q on %q: %w", ruleID, table, err)
	}
	return seq, nil
}

// CommitAlerts inserts alerts, skipping any whose (rule id, event id) is
// already stored, and sets the rule's watermark on table to seq, in one
// transaction: after a crash either both happened or neither, so a rule
// never skips events nor alerts twice on one. Alerts with a zero CreatedAt
// get now, with an empty Status get open. The watermark never moves back.
func (db *DB) CommitAlerts(ctx context.Context, ruleID, table string, seq int64, alerts []vigil.Alert) (inserted int, err error) {
	now := db.now()
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if len(alerts) > 0 {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO alerts (rule_id, rule_title, level, host_id, hostname, event_id,
				event_table, event_time, created_at, status, assignee, close_reason, fields_json)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id, event_id) DO NOTHING`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for _, a := range alerts {
				if a.RuleID == "" {
					a.RuleID = ruleID
				}
				if a.EventID == "" {
					return fmt.Errorf("alert of rule %q without event id: %w", a.RuleID, vigil.ErrInvalid)
				}
				if a.CreatedAt.IsZero() {
					a.CreatedAt = now
				}
				if a.Status == "" {
					a.Status = vigil.AlertOpen
				}
				if a.EventTable == "" {
					a.EventTable = table
				}
				fields := []byte("{}")
				if len(a.Fields) > 0 {
					if fields, err = json.Marshal(a.Fields); err != nil {
						return fmt.Errorf("encoding fields of alert on event %q: %w", a.EventID, err)
					}
				}
				res, err := stmt.ExecContext(ctx, a.RuleID, a.RuleTitle, string(a.Level), a.HostID, a.Hostname, a.EventID,
					a.EventTable, ts(a.EventTime), ts(a.CreatedAt), string(a.Status), a.Assignee, a.CloseReason, string(fields))
				if err != nil {
					return err
				}
				n, _ := res.RowsAffected()
				inserted += int(n)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO watermarks (rule_id, table_name, seq, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (rule_id, table_name) DO UPDATE SET seq = CASE WHEN excluded.seq > watermarks.seq THEN excluded.seq ELSE watermarks.seq END,
			updated_at = excluded.updated_at`,
			ruleID, table, seq, ts(now))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: committing alerts of %q on %q: %w", ruleID, table, err)
	}
	return inserted, nil
}

// alertListIndexes (migration 6, SQLite and PostgreSQL alike) serve the
// alert list's filters in its order (created_at, id): by rule and by
// hostname, beside the status and host id indexes of migration 1 (in
// SQLite every index ends with the rowid, which is id).
const alertListIndexes = `
CREATE INDEX alerts_rule ON alerts (rule_id, created_at, id);
CREATE INDEX alerts_hostname ON alerts (hostname, created_at, id);
`

// AlertFilter selects alerts. Empty fields match everything; Host matches
// the host id or the hostname. Limit defaults to 100 and is capped at
// MaxAlertLimit.
type AlertFilter struct {
	Status vigil.AlertStatus
	Host   string
	RuleID string
	// Before pages through a long list (keyset paging): only the alerts
	// that come after alert Before in the list's order (newest first).
	// 0 starts at the newest. An id that does not exist is
	// vigil.ErrNotFound.
	Before int64
	Limit  int
}

// MaxAlertLimit caps AlertFilter.Limit.
const MaxAlertLimit = 10_000

// AlertRecord is an alert with its lifecycle bookkeeping (how many
// matches were folded into it), as lists show it.
type AlertRecord struct {
	vigil.Alert
	AlertDedupe
}

// ListAlerts returns alerts matching f, newest first.
func (db *DB) ListAlerts(ctx context.Context, f AlertFilter) ([]vigil.Alert, error) {
	recs, err := db.ListAlertRecords(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]vigil.Alert, len(recs))
	for i, r := range recs {
		out[i] = r.Alert
	}
	return out, nil
}

// ListAlertRecords returns alerts matching f with their match counts,
// newest first (created_at, then id). The WHERE clause holds only the
// filters given, so each can use its index (status, host_id, hostname,
// rule_id, each with created_at); a page after Before starts from that
// alert's position in the same order instead of skipping rows.
func (db *DB) ListAlertRecords(ctx context.Context, f AlertFilter) ([]AlertRecord, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > MaxAlertLimit {
		f.Limit = MaxAlertLimit
	}
	var where []string
	var args []any
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.RuleID != "" {
		where, args = append(where, "rule_id = ?"), append(args, f.RuleID)
	}
	if f.Before > 0 {
		var created int64
		err := db.r.QueryRowContext(ctx, `SELECT created_at FROM alerts WHERE id = ?`, f.Before).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("state: listing alerts before alert %d: no such alert: %w", f.Before, vigil.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("state: listing alerts: %w", err)
		}
		where, args = append(where, "(created_at, id) < (?, ?)"), append(args, created, f.Before)
	}
	const order = " ORDER BY created_at DESC, id DESC LIMIT ?"
	q := `SELECT id, rule_id, rule_title, level, host_id, hostname, event_id, event_table,
		event_time, created_at, status, assignee, close_reason, fields_json, group_key, match_count, last_match_at FROM alerts`
	switch {
	case f.Host != "":
		// "host_id = ? OR hostname = ?" would read every alert of the host
		// and sort them; instead each branch reads its index in order up to
		// the limit, and only those ids are merged and sorted.
		rest := ""
		if len(where) > 0 {
			rest = " AND " + strings.Join(where, " AND ")
		}
		branch := func(col, index string) string {
			from := "alerts"
			if db.dialect != Postgres {
				// SQLite has no statistics here and may walk the status
				// index (most alerts are open) instead of the host's.
				from += " INDEXED BY " + index
			}
			return `SELECT id FROM (SELECT id FROM ` + from + ` WHERE ` + col + ` = ?` + rest + order + `) AS by_` + col
		}
		q += ` WHERE id IN (` + branch("host_id", "alerts_host") + ` UNION ` + branch("hostname", "alerts_hostname") + `)` + order
		var all []any
		all = append(append(append(all, f.Host), args...), f.Limit)
		all = append(append(append(all, f.Host), args...), f.Limit)
		args = all
	case len(where) > 0:
		q += " WHERE " + strings.Join(where, " AND ") + order
	default:
		q += order
	}
	rows, err := db.r.QueryContext(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("state: listing alerts: %w", err)
	}
	defer rows.Close()
	out := []AlertRecord{}
	for rows.Next() {
		var a AlertRecord
		var et, ct, lm int64
		var fields string
		if err := rows.Scan(&a.ID, &a.RuleID, &a.RuleTitle, &a.Level, &a.HostID, &a.Hostname, &a.EventID, &a.EventTable,
			&et, &ct, &a.Status, &a.Assignee, &a.CloseReason, &fields, &a.GroupKey, &a.MatchCount, &lm); err != nil {
			return nil, fmt.Errorf("state: listing alerts: %w", err)
		}
		a.EventTime, a.CreatedAt, a.LastMatchAt = fromTS(et), fromTS(ct), fromTS(lm)
		if fields != "" && fields != "{}" {
			// UseNumber keeps integers exact (an int64 pid or inode must not
			// come back as a float).
			dec := json.NewDecoder(bytes.NewReader([]byte(fields)))
			dec.UseNumber()
			if err := dec.Decode(&a.Fields); err != nil {
				return nil, fmt.Errorf("state: alert %d: decoding fields: %w", a.ID, err)
			}
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetAlertStatus moves an alert through its lifecycle.
func (db *DB) SetAlertStatus(ctx context.Context, id int64, status vigil.AlertStatus, assignee, reason string) error {
	switch status {
	case vigil.AlertOpen, vigil.AlertAcknowledged, vigil.AlertClosed:
	default:
		return fmt.Errorf("state: alert status %q: %w", status, vigil.ErrInvalid)
	}
	res, err := db.w.ExecContext(ctx, `UPDATE alerts SET status = ?, assignee = ?, close_reason = ? WHERE id = ?`,
		string(status), assignee, reason, id)
	if err != nil {
		return fmt.Errorf("state: updating alert %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: alert %d: %w", id, vigil.ErrNotFound)
	}
	return nil
}
