package state

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// Role is what a person's token may do. Each role includes the ones below
// it: viewer reads hosts, alerts and queries; operator also runs live
// queries; admin also manages tokens, secrets and hosts.
type Role string

// Roles, least privileged first.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether r includes the privileges of need.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// Principal is who a token belongs to.
type Principal struct {
	TokenID int64  `json:"token_id"`
	Name    string `json:"user"`
	Role    Role   `json:"role"`
}

// Token is a stored token's metadata (never the token).
type Token struct {
	ID         int64     `json:"id"`
	Name       string    `json:"user"`
	Role       Role      `json:"role"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// TokenPrefix starts every people token, so that one pasted in the wrong
// place is recognisable.
const TokenPrefix = "vgl_"

// CreateToken creates a token for the person name with a role and returns
// it; only its hash is stored, so this is the only time it can be read.
func (db *DB) CreateToken(ctx context.Context, name string, role string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", fmt.Errorf("state: a token needs a user name: %w", vigil.ErrInvalid)
	}
	if !Role(role).Valid() {
		return "", fmt.Errorf("state: role %q is not one of admin, operator, viewer: %w", role, vigil.ErrInvalid)
	}
	token := randomSecret(TokenPrefix)
	if _, err := db.w.ExecContext(ctx, `INSERT INTO tokens (name, role, hash, created_at) VALUES (?, ?, ?, ?)`,
		name, role, hashSecret(token), ts(db.now())); err != nil {
		return "", fmt.Errorf("state: creating token for %q: %w", name, err)
	}
	return token, nil
}

// Authenticate returns who an unrevoked token belongs to, or an error
// wrapping vigil.ErrUnauthorized.
func (db *DB) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, fmt.Errorf("state: no token: %w", vigil.ErrUnauthorized)
	}
	want := hashSecret(token)
	var p Principal
	var got []byte
	stmt, err := db.prepared(ctx, db.r, `SELECT id, name, role, hash FROM tokens WHERE hash = ? AND revoked_at = 0`)
	if err != nil {
		return Principal{}, fmt.Errorf("state: checking token: %w", err)
	}
	err = stmt.QueryRowContext(ctx, want).Scan(&p.TokenID, &p.Name, &p.Role, &got)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("state: unknown or revoked token: %w", vigil.ErrUnauthorized)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("state: checking token: %w", err)
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return Principal{}, fmt.Errorf("state: unknown or revoked token: %w", vigil.ErrUnauthorized)
	}
	return p, nil
}

// TokenValid reports whether token is a valid, unrevoked token.
func (db *DB) TokenValid(ctx context.Context, token string) (bool, error) {
	_, err := db.Authenticate(ctx, token)
	if errors.Is(err, vigil.ErrUnauthorized) {
		return false, nil
	}
	return err == nil, err
}

// TouchToken records that a token was used (callers throttle it).
func (db *DB) TouchToken(ctx context.Context, id int64, at time.Time) error {
	if _, err := db.w.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ? AND last_used_at < ?`, ts(at), id, ts(at)); err != nil {
		return fmt.Errorf("state: recording use of token %d: %w", id, err)
	}
	return nil
}

// Tokens lists every token's metadata, revoked ones included.
func (db *DB) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, name, role, created_at, last_used_at, revoked_at FROM tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("state: listing tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var c, u, r int64
		if err := rows.Scan(&t.ID, &t.Name, &t.Role, &c, &u, &r); err != nil {
			return nil, fmt.Errorf("state: listing tokens: %w", err)
		}
		t.CreatedAt, t.LastUsedAt, t.RevokedAt = fromTS(c), fromTS(u), fromTS(r)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes a token by id; it stops working at once.
func (db *DB) RevokeToken(ctx context.Context, id int64) error {
	res, err := db.w.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, ts(db.now()), id)
	if err != nil {
		return fmt.Errorf("state: revoking token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: token %d (or it is already revoked): %w", id, vigil.ErrNotFound)
	}
	return nil
}
