package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEntry is one record of the append-only audit log: who did what to
// what, from where, when. The table refuses UPDATE and DELETE (triggers),
// so entries can only be added.
type AuditEntry struct {
	ID     int64          `json:"id"`
	Time   time.Time      `json:"time"`
	Actor  string         `json:"actor"`  // user name, "agent:<host id>" or "anonymous"
	Action string         `json:"action"` // e.g. query.start, token.create, auth.bad_token
	Target string         `json:"target,omitempty"`
	Source string         `json:"source,omitempty"` // remote address
	Detail map[string]any `json:"detail,omitempty"`
}

// Audit appends an entry. A zero Time is now.
func (db *DB) Audit(ctx context.Context, e AuditEntry) error {
	return db.tx(ctx, func(tx *sql.Tx) error { return appendAudit(ctx, tx, e, db.now()) })
}

func appendAudit(ctx context.Context, tx *sql.Tx, e AuditEntry, now time.Time) error {
	if e.Time.IsZero() {
		e.Time = now
	}
	detail := []byte("{}")
	if len(e.Detail) > 0 {
		var err error
		if detail, err = json.Marshal(e.Detail); err != nil {
			return fmt.Errorf("state: encoding audit detail: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (time, actor, action, target, source, detail_json) VALUES (?, ?, ?, ?, ?, ?)`,
		ts(e.Time), e.Actor, e.Action, e.Target, e.Source, string(detail)); err != nil {
		return fmt.Errorf("state: appending audit entry %q: %w", e.Action, err)
	}
	return nil
}

// AuditFilter selects audit entries: those with an id above AfterID (for
// paging and export), optionally one action, at most Limit (default 1000).
type AuditFilter struct {
	AfterID int64
	Action  string
	Limit   int
}

// AuditLog returns entries in id order (oldest first).
func (db *DB) AuditLog(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, time, actor, action, target, source, detail_json FROM audit_log
		WHERE id > ? AND (? = '' OR action = ?) ORDER BY id LIMIT ?`, f.AfterID, f.Action, f.Action, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("state: reading audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var t int64
		var d string
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.Source, &d); err != nil {
			return nil, fmt.Errorf("state: reading audit log: %w", err)
		}
		e.Time = fromTS(t)
		if d != "" && d != "{}" {
			if err := json.Unmarshal([]byte(d), &e.Detail); err != nil {
				return nil, fmt.Errorf("state: audit entry %d: decoding detail: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
