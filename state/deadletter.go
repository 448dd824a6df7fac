package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vigilhq/vigil"
)

// DeadLetter is a notification an output could not deliver after its
// last retry (detect/output writes them). Payload is what would have been
// sent (JSON of the alerts), so it can be inspected or sent again.
type DeadLetter struct {
	ID        int64     `json:"id"`
	Output    string    `json:"output"` // the output's configured name
	Kind      string    `json:"kind"`   // webhook, slack, syslog, email
	Payload   string    `json:"payload"`
	Error     string    `json:"error"` // the last attempt's error
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
}

// AddDeadLetter stores d (ID is assigned; a zero CreatedAt is now).
func (db *DB) AddDeadLetter(ctx context.Context, d DeadLetter) (int64, error) {
	if d.CreatedAt.IsZero() {
		d.CreatedAt = db.now()
	}
	var id int64
	if err := db.w.QueryRowContext(ctx, `INSERT INTO dead_letters (output, kind, payload, error, attempts, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, d.Output, d.Kind, d.Payload, d.Error, d.Attempts, ts(d.CreatedAt)).Scan(&id); err != nil {
		return 0, fmt.Errorf("state: adding dead letter of output %q: %w", d.Output, err)
	}
	return id, nil
}

// DeadLetters returns up to limit dead letters (default 100), newest first.
func (db *DB) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, output, kind, payload, error, attempts, created_at FROM dead_letters
		ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: listing dead letters: %w", err)
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		var d DeadLetter
		var c int64
		if err := rows.Scan(&d.ID, &d.Output, &d.Kind, &d.Payload, &d.Error, &d.Attempts, &c); err != nil {
			return nil, fmt.Errorf("state: listing dead letters: %w", err)
		}
		d.CreatedAt = fromTS(c)
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeadLetter returns dead letter id (vigil.ErrNotFound when there is none).
func (db *DB) DeadLetter(ctx context.Context, id int64) (DeadLetter, error) {
	var d DeadLetter
	var c int64
	err := db.r.QueryRowContext(ctx, `SELECT id, output, kind, payload, error, attempts, created_at FROM dead_letters WHERE id = ?`, id).
		Scan(&d.ID, &d.Output, &d.Kind, &d.Payload, &d.Error, &d.Attempts, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("state: dead letter %d: %w", id, vigil.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("state: reading dead letter %d: %w", id, err)
	}
	d.CreatedAt = fromTS(c)
	return d, nil
}

// DeleteDeadLetter removes one dead letter (after it was resent or read).
func (db *DB) DeleteDeadLetter(ctx context.Context, id int64) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM dead_letters WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("state: deleting dead letter %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: dead letter %d: %w", id, vigil.ErrNotFound)
	}
	return nil
}
