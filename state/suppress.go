package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/vigilhq/vigil"
)

// Suppression silences matches for a while: a match is suppressed when
// every non-empty criterion holds (RuleID equals the rule's id; Host
// equals the host id or the hostname; Field's value, formatted as text,
// equals Value). Suppressed matches open no alert and add to Hits. A
// suppression needs at least one criterion and an expiry in the future;
// it stops applying at ExpiresAt.
type Suppression struct {
	ID        int64     `json:"id"`
	RuleID    string    `json:"rule_id,omitempty"`
	Host      string    `json:"host,omitempty"`
	Field     string    `json:"field,omitempty"`
	Value     string    `json:"value,omitempty"`
	Reason    string    `json:"reason"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Hits      int64     `json:"hits"`
	LastHitAt time.Time `json:"last_hit_at,omitzero"`
}

// Matches reports whether the suppression applies to alert a at now.
func (s Suppression) Matches(a vigil.Alert, now time.Time) bool {
	if !now.Before(s.ExpiresAt) {
		return false
	}
	if s.RuleID != "" && s.RuleID != a.RuleID {
		return false
	}
	if s.Host != "" && s.Host != a.HostID && s.Host != a.Hostname {
		return false
	}
	if s.Field != "" {
		v, ok := a.Fields[s.Field]
		if !ok || v == nil || fmt.Sprint(v) != s.Value {
			return false
		}
	}
	return true
}

// AddSuppression stores s (ID, CreatedAt, Hits are assigned) and audits it
// as actor from source. It returns the stored suppression.
func (db *DB) AddSuppression(ctx context.Context, s Suppression, actor, source string) (Suppression, error) {
	now := db.now().UTC()
	switch {
	case s.RuleID == "" && s.Host == "" && s.Field == "":
		return s, fmt.Errorf("state: suppression needs a rule id, a host or a field: %w", vigil.ErrInvalid)
	case s.Field == "" && s.Value != "":
		return s, fmt.Errorf("state: suppression value %q without a field: %w", s.Value, vigil.ErrInvalid)
	case !s.ExpiresAt.After(now):
		return s, fmt.Errorf("state: suppression expiry %s is not in the future: %w", s.ExpiresAt.Format(time.RFC3339), vigil.ErrInvalid)
	}
	s.CreatedBy, s.CreatedAt, s.Hits, s.LastHitAt = actor, now, 0, time.Time{}
	s.ExpiresAt = s.ExpiresAt.UTC()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO suppressions (rule_id, host, field, value, reason, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, s.RuleID, s.Host, s.Field, s.Value, s.Reason, actor, ts(now), ts(s.ExpiresAt)).Scan(&s.ID); err != nil {
			return err
		}
		return appendAudit(ctx, tx, AuditEntry{Actor: actor, Action: "suppression.create", Target: fmt.Sprint(s.ID), Source: source,
			Detail: map[string]any{"rule_id": s.RuleID, "host": s.Host, "field": s.Field, "value": s.Value, "reason": s.Reason,
				"expires_at": s.ExpiresAt.Format(time.RFC3339)}}, now)
	})
	if err != nil {
		return s, fmt.Errorf("state: adding suppression: %w", err)
	}
	return s, nil
}

// ExpireSuppression ends suppression id now (it stays listed with its
// hits), audited as actor from source.
func (db *DB) ExpireSuppression(ctx context.Context, id int64, actor, source string) error {
	now := db.now().UTC()
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE suppressions SET expires_at = ? WHERE id = ? AND expires_at > ?`, ts(now), id, ts(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("active suppression %d: %w", id, vigil.ErrNotFound)
		}
		return appendAudit(ctx, tx, AuditEntry{Actor: actor, Action: "suppression.expire", Target: fmt.Sprint(id), Source: source}, now)
	})
	if err != nil {
		return fmt.Errorf("state: expiring suppression: %w", err)
	}
	return nil
}

// Suppressions lists suppressions, newest first; expired ones only when
// withExpired.
func (db *DB) Suppressions(ctx context.Context, withExpired bool) ([]Suppression, error) {
	after := db.now().UnixNano()
	if withExpired {
		after = -1
	}
	rows, err := db.r.QueryContext(ctx, suppressionSelect+` WHERE expires_at > ? ORDER BY id DESC`, after)
	if err != nil {
		return nil, fmt.Errorf("state: listing suppressions: %w", err)
	}
	return scanSuppressions(rows)
}

const suppressionSelect = `SELECT id, rule_id, host, field, value, reason, created_by, created_at, expires_at, hits, last_hit_at FROM suppressions`

func activeSuppressions(ctx context.Context, tx *sql.Tx, now time.Time) ([]Suppression, error) {
	rows, err := tx.QueryContext(ctx, suppressionSelect+` WHERE expires_at > ? ORDER BY id`, ts(now))
	if err != nil {
		return nil, fmt.Errorf("reading suppressions: %w", err)
	}
	return scanSuppressions(rows)
}

func scanSuppressions(rows *sql.Rows) ([]Suppression, error) {
	defer rows.Close()
	out := []Suppression{}
	for rows.Next() {
		var s Suppression
		var c, e, l int64
		if err := rows.Scan(&s.ID, &s.RuleID, &s.Host, &s.Field, &s.Value, &s.Reason, &s.CreatedBy, &c, &e, &s.Hits, &l); err != nil {
			return nil, fmt.Errorf("state: reading suppressions: %w", err)
		}
		s.CreatedAt, s.ExpiresAt, s.LastHitAt = fromTS(c), fromTS(e), fromTS(l)
		out = append(out, s)
	}
	return out, rows.Err()
}

// firstSuppression returns the id of the oldest suppression in sups
// matching a at now.
func firstSuppression(sups []Suppression, a vigil.Alert, now time.Time) (int64, bool) {
	for _, s := range sups {
		if s.Matches(a, now) {
			return s.ID, true
		}
	}
	return 0, false
}
