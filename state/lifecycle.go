package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// The alert lifecycle (migration 5): every rule match is recorded once in
// alert_matches (so a match examined twice, as correlations do, counts
// once); a match either opens an alert, adds to an open alert of the same
// rule, host and group key (dedupe), or is counted by a suppression.

// AuditActorDetect is the audit actor of changes the detection engine makes.
const AuditActorDetect = "detect"

const lifecycleDDL = `
ALTER TABLE alerts ADD COLUMN group_key TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN match_count {{BIGINT}} NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN last_match_at {{BIGINT}} NOT NULL DEFAULT 0;
CREATE INDEX alerts_dedupe ON alerts (rule_id, host_id, group_key, created_at);

CREATE TABLE alert_matches (
	rule_id        TEXT NOT NULL,
	event_id       TEXT NOT NULL,
	alert_id       {{BIGINT}} NOT NULL DEFAULT 0,
	suppression_id {{BIGINT}} NOT NULL DEFAULT 0,
	matched_at     {{BIGINT}} NOT NULL,
	PRIMARY KEY (rule_id, event_id)
);

CREATE TABLE suppressions (
	id          {{SERIAL}},
	rule_id     TEXT NOT NULL DEFAULT '',
	host        TEXT NOT NULL DEFAULT '',
	field       TEXT NOT NULL DEFAULT '',
	value       TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	created_by  TEXT NOT NULL,
	created_at  {{BIGINT}} NOT NULL,
	expires_at  {{BIGINT}} NOT NULL,
	hits        {{BIGINT}} NOT NULL DEFAULT 0,
	last_hit_at {{BIGINT}} NOT NULL DEFAULT 0
);
CREATE INDEX suppressions_expiry ON suppressions (expires_at);

CREATE TABLE dead_letters (
	id         {{SERIAL}},
	output     TEXT NOT NULL,
	kind       TEXT NOT NULL,
	payload    TEXT NOT NULL,
	error      TEXT NOT NULL,
	attempts   {{BIGINT}} NOT NULL,
	created_at {{BIGINT}} NOT NULL
);
`

// GroupKey is the dedupe group key of an alert: the values of the fields
// named by groupBy, in order, separated by NUL; "" when groupBy is empty.
func GroupKey(fields map[string]any, groupBy []string) string {
	if len(groupBy) == 0 {
		return ""
	}
	var b strings.Builder
	for i, g := range groupBy {
		if i > 0 {
			b.WriteByte(0)
		}
		if v, ok := fields[g]; ok && v != nil {
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

// CommitMatches records the matches of one rule and sets its watermark on
// table to seq, in one transaction (so a restart neither skips nor
// repeats a match). Each match whose (rule id, event id) was never
// recorded:
//
//   - is counted by the first active suppression it matches (no alert);
//   - else, when window > 0 and an alert of the same rule, host id and group
//     key (GroupKey of its fields over groupBy) is open or acknowledged and
//     was created less than window before now, adds one to that alert's
//     match count and sets its last match time;
//   - else opens a new alert.
//
// It returns the alerts opened (with their ids), and how many matches
// were deduplicated and suppressed. Openings, dedupes and suppression hits
// are written to the audit log (one entry per alert or suppression per
// call) by actor "detect".
func (db *DB) CommitMatches(ctx context.Context, ruleID, table string, seq int64, matches []vigil.Alert,
	groupBy []string, window time.Duration) (created []vigil.Alert, deduped, suppressed int, err error) {
	now := db.now().UTC()
	err = db.tx(ctx, func(tx *sql.Tx) error {
		created, deduped, suppressed = nil, 0, 0
		if len(matches) > 0 {
			var sups []Suppression
			var err error
			if sups, err = activeSuppressions(ctx, tx, now); err != nil {
				return err
			}
			dedupHits := map[int64]int{}
			supHits := map[int64]int{}
			for _, a := range matches {
				if a.RuleID == "" {
					a.RuleID = ruleID
				}
				if a.EventID == "" {
					return fmt.Errorf("match of rule %q without event id: %w", a.RuleID, vigil.ErrInvalid)
				}
				res, err := tx.ExecContext(ctx, `INSERT INTO alert_matches (rule_id, event_id, matched_at) VALUES (?, ?, ?)
					ON CONFLICT (rule_id, event_id) DO NOTHING`, a.RuleID, a.EventID, ts(now))
				if err != nil {
					return fmt.Errorf("recording match on event %q: %w", a.EventID, err)
				}
				if n, _ := res.RowsAffected(); n == 0 {
					continue // seen before
				}
				if s, ok := firstSuppression(sups, a, now); ok {
					supHits[s]++
					suppressed++
					if _, err := tx.ExecContext(ctx, `UPDATE alert_matches SET suppression_id = ? WHERE rule_id = ? AND event_id = ?`,
						s, a.RuleID, a.EventID); err != nil {
						return err
					}
					continue
				}
				key := GroupKey(a.Fields, groupBy)
				if window > 0 {
					var id int64
					err := tx.QueryRowContext(ctx, `SELECT id FROM alerts WHERE rule_id = ? AND host_id = ? AND group_key = ?
						AND status IN ('open', 'acknowledged') AND created_at > ? ORDER BY created_at DESC, id DESC LIMIT 1`,
						a.RuleID, a.HostID, key, ts(now.Add(-window))).Scan(&id)
					switch {
					case err == nil:
						if _, err := tx.ExecContext(ctx, `UPDATE alerts SET match_count = match_count + 1, last_match_at = ? WHERE id = ?`,
							ts(now), id); err != nil {
							return fmt.Errorf("adding a match to alert %d: %w", id, err)
						}
						if _, err := tx.ExecContext(ctx, `UPDATE alert_matches SET alert_id = ? WHERE rule_id = ? AND event_id = ?`,
							id, a.RuleID, a.EventID); err != nil {
							return err
						}
						dedupHits[id]++
						deduped++
						continue
					case !errors.Is(err, sql.ErrNoRows):
						return fmt.Errorf("looking for an open alert to dedupe into: %w", err)
					}
				}
				id, ok, err := insertAlert(ctx, tx, a, table, key, now)
				if err != nil {
					return err
				}
				if !ok {
					continue // stored before the lifecycle existed
				}
				if _, err := tx.ExecContext(ctx, `UPDATE alert_matches SET alert_id = ? WHERE rule_id = ? AND event_id = ?`,
					id, a.RuleID, a.EventID); err != nil {
					return err
				}
				a.ID = id
				if a.CreatedAt.IsZero() {
					a.CreatedAt = now
				}
				if a.Status == "" {
					a.Status = vigil.AlertOpen
				}
				if a.EventTable == "" {
					a.EventTable = table
				}
				created = append(created, a)
				if err := appendAudit(ctx, tx, AuditEntry{Actor: AuditActorDetect, Action: "alert.create", Target: fmt.Sprint(id),
					Detail: map[string]any{"rule_id": a.RuleID, "host_id": a.HostID, "event_id": a.EventID, "level": string(a.Level)}}, now); err != nil {
					return err
				}
			}
			for id, n := range dedupHits {
				if err := appendAudit(ctx, tx, AuditEntry{Actor: AuditActorDetect, Action: "alert.dedupe", Target: fmt.Sprint(id),
					Detail: map[string]any{"matches": n}}, now); err != nil {
					return err
				}
			}
			for id, n := range supHits {
				if _, err := tx.ExecContext(ctx, `UPDATE suppressions SET hits = hits + ?, last_hit_at = ? WHERE id = ?`, n, ts(now), id); err != nil {
					return fmt.Errorf("counting hits of suppression %d: %w", id, err)
				}
				if err := appendAudit(ctx, tx, AuditEntry{Actor: AuditActorDetect, Action: "suppression.hit", Target: fmt.Sprint(id),
					Detail: map[string]any{"rule_id": ruleID, "matches": n}}, now); err != nil {
					return err
				}
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO watermarks (rule_id, table_name, seq, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (rule_id, table_name) DO UPDATE SET seq = CASE WHEN excluded.seq > watermarks.seq THEN excluded.seq ELSE watermarks.seq END,
			updated_at = excluded.updated_at`,
			ruleID, table, seq, ts(now))
		return err
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("state: committing matches of %q on %q: %w", ruleID, table, err)
	}
	return created, deduped, suppressed, nil
}

func insertAlert(ctx context.Context, tx *sql.Tx, a vigil.Alert, table, key string, now time.Time) (int64, bool, error) {
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
		var err error
		if fields, err = json.Marshal(a.Fields); err != nil {
			return 0, false, fmt.Errorf("encoding fields of alert on event %q: %w", a.EventID, err)
		}
	}
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO alerts (rule_id, rule_title, level, host_id, hostname, event_id,
		event_table, event_time, created_at, status, assignee, close_reason, fields_json, group_key, match_count, last_match_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (rule_id, event_id) DO NOTHING RETURNING id`,
		a.RuleID, a.RuleTitle, string(a.Level), a.HostID, a.Hostname, a.EventID,
		a.EventTable, ts(a.EventTime), ts(a.CreatedAt), string(a.Status), a.Assignee, a.CloseReason, string(fields), key, ts(now)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("inserting alert on event %q: %w", a.EventID, err)
	}
	return id, true, nil
}

// AlertDedupe is the lifecycle bookkeeping of one alert.
type AlertDedupe struct {
	GroupKey    string    `json:"group_key,omitempty"`
	MatchCount  int64     `json:"match_count"` // matches folded into the alert, the first included
	LastMatchAt time.Time `json:"last_match_at,omitzero"`
}

// AlertDedupes returns the dedupe bookkeeping of the given alerts (ids
// not found are absent). The console shows MatchCount beside each alert.
func (db *DB) AlertDedupes(ctx context.Context, ids []int64) (map[int64]AlertDedupe, error) {
	out := make(map[int64]AlertDedupe, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		ids = ids[n:]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := db.r.QueryContext(ctx, `SELECT id, group_key, match_count, last_match_at FROM alerts WHERE id IN (?`+
			strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("state: reading alert dedupe counts: %w", err)
		}
		for rows.Next() {
			var id, last int64
			var d AlertDedupe
			if err := rows.Scan(&id, &d.GroupKey, &d.MatchCount, &last); err != nil {
				rows.Close()
				return nil, fmt.Errorf("state: reading alert dedupe counts: %w", err)
			}
			d.LastMatchAt = fromTS(last)
			out[id] = d
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
