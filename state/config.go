package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// ConfigVersion is one saved version of the fleet configuration. The
// document's format belongs to package control; state keeps it as JSON.
// The highest version is the one served.
type ConfigVersion struct {
	Version   int64     `json:"version"`
	Doc       string    `json:"-"`
	Actor     string    `json:"actor"`
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// PutConfig saves doc as the next version, with its audit entry, in one
// transaction. base is the version the writer started from: if another
// version was saved since, nothing is saved and the error wraps
// vigil.ErrConflict (reload and retry). base -1 skips the check.
func (db *DB) PutConfig(ctx context.Context, doc, actor, comment string, base int64, audit *AuditEntry) (ConfigVersion, error) {
	v := ConfigVersion{Doc: doc, Actor: actor, Comment: comment, CreatedAt: db.now()}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var latest int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM config_versions`).Scan(&latest); err != nil {
			return err
		}
		if base >= 0 && base != latest {
			return fmt.Errorf("the configuration changed since version %d (now %d): %w", base, latest, vigil.ErrConflict)
		}
		v.Version = latest + 1
		if _, err := tx.ExecContext(ctx, `INSERT INTO config_versions (version, doc, actor, comment, created_at) VALUES (?, ?, ?, ?, ?)`,
			v.Version, doc, actor, comment, ts(v.CreatedAt)); err != nil {
			if isUniqueViolation(err) { // a replica saved at the same moment
				return fmt.Errorf("the configuration changed meanwhile: %w", vigil.ErrConflict)
			}
			return err
		}
		if audit != nil {
			a := *audit
			if a.Detail == nil {
				a.Detail = map[string]any{}
			}
			a.Detail["version"] = v.Version
			return appendAudit(ctx, tx, a, v.CreatedAt)
		}
		return nil
	})
	if err != nil {
		return ConfigVersion{}, fmt.Errorf("state: saving configuration: %w", err)
	}
	return v, nil
}

// LatestConfig returns the served configuration version; Version 0 (and
// no error) when none was ever saved.
func (db *DB) LatestConfig(ctx context.Context) (ConfigVersion, error) {
	v, err := db.configVersion(ctx, `ORDER BY version DESC LIMIT 1`)
	if errors.Is(err, vigil.ErrNotFound) {
		return ConfigVersion{}, nil
	}
	return v, err
}

// Config returns one version.
func (db *DB) Config(ctx context.Context, version int64) (ConfigVersion, error) {
	return db.configVersion(ctx, `WHERE version = ?`, version)
}

func (db *DB) configVersion(ctx context.Context, tail string, args ...any) (ConfigVersion, error) {
	var v ConfigVersion
	var created int64
	err := db.r.QueryRowContext(ctx, `SELECT version, doc, actor, comment, created_at FROM config_versions `+tail, args...).
		Scan(&v.Version, &v.Doc, &v.Actor, &v.Comment, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return ConfigVersion{}, fmt.Errorf("state: configuration version: %w", vigil.ErrNotFound)
	}
	if err != nil {
		return ConfigVersion{}, fmt.Errorf("state: reading configuration: %w", err)
	}
	v.CreatedAt = fromTS(created)
	return v, nil
}

// ConfigVersions lists versions newest first, without documents.
func (db *DB) ConfigVersions(ctx context.Context, limit int) ([]ConfigVersion, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.r.QueryContext(ctx, `SELECT version, actor, comment, created_at FROM config_versions ORDER BY version DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: listing configuration versions: %w", err)
	}
	defer rows.Close()
	out := []ConfigVersion{}
	for rows.Next() {
		var v ConfigVersion
		var created int64
		if err := rows.Scan(&v.Version, &v.Actor, &v.Comment, &created); err != nil {
			return nil, fmt.Errorf("state: listing configuration versions: %w", err)
		}
		v.CreatedAt = fromTS(created)
		out = append(out, v)
	}
	return out, rows.Err()
}

var labelRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,62}$`)

// ValidLabel reports whether s can be a label: lower-case letters,
// digits and _ . : - , at most 63 characters.
func ValidLabel(s string) bool { return labelRE.MatchString(s) }

// SetHostLabels replaces the labels given to a host by people.
func (db *DB) SetHostLabels(ctx context.Context, hostID string, labels []string) error {
	for _, l := range labels {
		if !ValidLabel(l) {
			return fmt.Errorf("state: label %q: use lower-case letters, digits and _.:- (at most 63): %w", l, vigil.ErrInvalid)
		}
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM hosts WHERE id = ?`, hostID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("host %q: %w", hostID, vigil.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM host_labels WHERE host_id = ?`, hostID); err != nil {
			return err
		}
		for _, l := range labels {
			if _, err := tx.ExecContext(ctx, `INSERT INTO host_labels (host_id, label) VALUES (?, ?) ON CONFLICT DO NOTHING`, hostID, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: setting labels of %q: %w", hostID, err)
	}
	return nil
}

// HostLabels returns the labels people gave a host, sorted.
func (db *DB) HostLabels(ctx context.Context, hostID string) ([]string, error) {
	out, err := db.queryStrings(ctx, `SELECT label FROM host_labels WHERE host_id = ? ORDER BY label`, hostID)
	if err != nil {
		return nil, fmt.Errorf("state: reading labels of %q: %w", hostID, err)
	}
	return out, nil
}

// HostsWithLabel returns the ids of the hosts carrying a label.
func (db *DB) HostsWithLabel(ctx context.Context, label string) ([]string, error) {
	out, err := db.queryStrings(ctx, `SELECT host_id FROM host_labels WHERE label = ? ORDER BY host_id`, strings.ToLower(label))
	if err != nil {
		return nil, fmt.Errorf("state: hosts with label %q: %w", label, err)
	}
	return out, nil
}

// queryStrings runs q, which selects one text column, on the reader and
// returns its values (an empty slice for none).
func (db *DB) queryStrings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
