package state

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigilhq/vigil"
)

// hashSecret is how every secret (node key, enroll secret, token) is kept.
// The secrets are 32 random bytes (or an operator's enroll secret), so a
// plain SHA-256 is enough: there is nothing to brute-force.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// randomSecret returns 32 random bytes, base64url without padding, with a
// prefix saying what it is (so a leaked one is recognisable in logs).
func randomSecret(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("state: crypto/rand failed: %v", err))
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

const hostColumns = `h.id, h.identifier, h.uuid, h.hostname, h.platform, h.os_version, h.agent_name,
	h.agent_version, h.enrolled_at, h.last_seen, h.long_poll, h.remote_addr, h.details_json`

type scanner interface{ Scan(dest ...any) error }

func scanHost(s scanner, extra ...any) (vigil.Host, error) {
	var h vigil.Host
	var enrolled, seen int64
	var longPoll int
	dest := []any{&h.ID, &h.Identifier, &h.UUID, &h.Hostname, &h.Platform, &h.OSVersion, &h.AgentName,
		&h.AgentVersion, &enrolled, &seen, &longPoll, &h.RemoteAddr, &h.DetailsJSON}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return vigil.Host{}, err
	}
	h.EnrolledAt, h.LastSeen, h.LongPoll = fromTS(enrolled), fromTS(seen), longPoll != 0
	return h, nil
}

// EnrollHost records a host that proved itself with an enroll secret and
// returns it with a new node key. Hosts are identified by host_identifier
// and hardware uuid together: the same pair re-enrolling is the same host
// (its details are refreshed, its older node keys revoked); two machines
// sharing a host_identifier but not a uuid are two hosts.
func (db *DB) EnrollHost(ctx context.Context, h vigil.Host) (vigil.Host, string, error) {
	if h.Identifier == "" {
		return vigil.Host{}, "", fmt.Errorf("state: enrolling a host without host_identifier: %w", vigil.ErrInvalid)
	}
	now := db.now()
	if h.EnrolledAt.IsZero() {
		h.EnrolledAt = now
	}
	if h.LastSeen.IsZero() {
		h.LastSeen = now
	}
	if h.DetailsJSON == "" {
		h.DetailsJSON = "{}"
	}
	key := randomSecret("nk_")
	gen := db.keys.gen.Load() // before the commit: see the cache below
	existing := false
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var id string
		var enrolled int64
		err := tx.QueryRowContext(ctx, `SELECT id, enrolled_at FROM hosts WHERE identifier = ? AND uuid = ?`,
			h.Identifier, h.UUID).Scan(&id, &enrolled)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			h.ID = NewID()
			_, err = tx.ExecContext(ctx, `INSERT INTO hosts (id, identifier, uuid, hostname, platform, os_version,
				agent_name, agent_version, enrolled_at, last_seen, long_poll, remote_addr, details_json)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				h.ID, h.Identifier, h.UUID, h.Hostname, h.Platform, h.OSVersion, h.AgentName, h.AgentVersion,
				ts(h.EnrolledAt), ts(h.LastSeen), boolInt(h.LongPoll), h.RemoteAddr, h.DetailsJSON)
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			existing = true
			h.ID, h.EnrolledAt = id, fromTS(enrolled)
			_, err = tx.ExecContext(ctx, `UPDATE hosts SET hostname = ?, platform = ?, os_version = ?, agent_name = ?,
				agent_version = ?, last_seen = ?, long_poll = ?, remote_addr = ?, details_json = ? WHERE id = ?`,
				h.Hostname, h.Platform, h.OSVersion, h.AgentName, h.AgentVersion, ts(h.LastSeen),
				boolInt(h.LongPoll), h.RemoteAddr, h.DetailsJSON, h.ID)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE node_keys SET revoked_at = ? WHERE host_id = ? AND revoked_at = 0`,
				ts(now), h.ID); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO node_keys (hash, host_id, created_at) VALUES (?, ?, ?)`,
			hashSecret(key), h.ID, ts(now))
		return err
	})
	if existing {
		// Its older keys are revoked and its details changed; also when
		// the commit failed, whose outcome is unknown. A new host has
		// nothing cached.
		db.hostChanged(h.ID)
	}
	if err != nil {
		return vigil.Host{}, "", fmt.Errorf("state: enrolling host %q: %w", h.Identifier, err)
	}
	// The agent's next requests (config, then every other) find its key
	// cached, as HostByNodeKey would read it. The generation read before
	// the commit makes it stale at once if anything changed the host
	// since (a revocation racing this enrollment; a re-enrollment, whose
	// own change is recorded above).
	h.EnrolledAt, h.LastSeen = fromTS(ts(h.EnrolledAt)), fromTS(ts(h.LastSeen))
	db.cacheHost(string(hashSecret(key)), h, gen)
	return h, key, nil
}

// HostByNodeKey returns the host a valid (unrevoked) node key belongs to,
// or an error wrapping vigil.ErrNotFound.
func (db *DB) HostByNodeKey(ctx context.Context, nodeKey string) (vigil.Host, error) {
	if nodeKey == "" {
		return vigil.Host{}, fmt.Errorf("state: empty node key: %w", vigil.ErrNotFound)
	}
	want := hashSecret(nodeKey)
	if h, ok := db.cachedHostByHash(string(want)); ok {
		return h, nil
	}
	gen := db.keys.gen.Load()
	var got []byte
	stmt, err := db.prepared(ctx, db.r, `SELECT `+hostColumns+`, k.hash FROM node_keys k JOIN hosts h ON h.id = k.host_id
		WHERE k.hash = ? AND k.revoked_at = 0`)
	if err != nil {
		return vigil.Host{}, fmt.Errorf("state: looking up node key: %w", err)
	}
	h, err := scanHost(stmt.QueryRowContext(ctx, want), &got)
	if errors.Is(err, sql.ErrNoRows) {
		return vigil.Host{}, fmt.Errorf("state: unknown node key: %w", vigil.ErrNotFound)
	}
	if err != nil {
		return vigil.Host{}, fmt.Errorf("state: looking up node key: %w", err)
	}
	// The index lookup is by hash; this compare keeps the final decision
	// constant-time should the lookup ever become a prefix or range scan.
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return vigil.Host{}, fmt.Errorf("state: unknown node key: %w", vigil.ErrNotFound)
	}
	db.cacheHost(string(want), h, gen)
	return h, nil
}

// Host returns one host by id.
func (db *DB) Host(ctx context.Context, id string) (vigil.Host, error) {
	h, err := scanHost(db.r.QueryRowContext(ctx, `SELECT `+hostColumns+` FROM hosts h WHERE h.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return vigil.Host{}, fmt.Errorf("state: host %q: %w", id, vigil.ErrNotFound)
	}
	if err != nil {
		return vigil.Host{}, fmt.Errorf("state: reading host %q: %w", id, err)
	}
	return h, nil
}

// Hosts returns every host, ordered by hostname then id.
func (db *DB) Hosts(ctx context.Context) ([]vigil.Host, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+hostColumns+` FROM hosts h ORDER BY lower(h.hostname), h.id`)
	if err != nil {
		return nil, fmt.Errorf("state: listing hosts: %w", err)
	}
	defer rows.Close()
	var out []vigil.Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, fmt.Errorf("state: listing hosts: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: listing hosts: %w", err)
	}
	return out, nil
}

// HostTargets returns every host for a live query to all of them, ordered
// as Hosts, with only ID, Hostname and LastSeen set: a live query waits
// for its targets, and reading every host's details for them took 60 to
// 230 ms at 10,000 hosts on a busy server.
func (db *DB) HostTargets(ctx context.Context) ([]vigil.Host, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT h.id, h.hostname, h.last_seen FROM hosts h ORDER BY lower(h.hostname), h.id`)
	if err != nil {
		return nil, fmt.Errorf("state: listing hosts: %w", err)
	}
	defer rows.Close()
	var out []vigil.Host
	for rows.Next() {
		var h vigil.Host
		var seen int64
		if err := rows.Scan(&h.ID, &h.Hostname, &seen); err != nil {
			return nil, fmt.Errorf("state: listing hosts: %w", err)
		}
		h.LastSeen = fromTS(seen)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: listing hosts: %w", err)
	}
	return out, nil
}

// CountHosts counts the hosts, and those seen at or after since (online):
// a metrics scrape needs the two numbers, not 10,000 rows.
func (db *DB) CountHosts(ctx context.Context, since time.Time) (online, total int, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(CASE WHEN last_seen <> 0 AND last_seen >= ? THEN 1 ELSE 0 END), 0) FROM hosts`,
		ts(since)).Scan(&total, &online)
	if err != nil {
		return 0, 0, fmt.Errorf("state: counting hosts: %w", err)
	}
	return online, total, nil
}

// FindHosts resolves references (a host id, host_identifier or hostname,
// case-insensitive for the names) to hosts. Each host appears once, in the
// order of the first reference naming it. A reference matching no host is
// returned in missing.
func (db *DB) FindHosts(ctx context.Context, refs []string) (hosts []vigil.Host, missing []string, err error) {
	seen := map[string]bool{}
	for _, ref := range refs {
		ref = strings.TrimSpace(ref)
		if ref == "" {
			continue
		}
		rows, err := db.r.QueryContext(ctx, `SELECT `+hostColumns+` FROM hosts h
			WHERE h.id = ? OR lower(h.identifier) = lower(?) OR lower(h.hostname) = lower(?)
			ORDER BY lower(h.hostname), h.id`, ref, ref, ref)
		if err != nil {
			return nil, nil, fmt.Errorf("state: finding host %q: %w", ref, err)
		}
		found := false
		for rows.Next() {
			h, err := scanHost(rows)
			if err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("state: finding host %q: %w", ref, err)
			}
			found = true
			if !seen[h.ID] {
				seen[h.ID] = true
				hosts = append(hosts, h)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("state: finding host %q: %w", ref, err)
		}
		if !found {
			missing = append(missing, ref)
		}
	}
	return hosts, missing, nil
}

// Seen is a host's latest check-in, for TouchHosts.
type Seen struct {
	Time       time.Time
	RemoteAddr string
}

// TouchHosts records check-ins of many hosts in one transaction (the
// control plane batches them rather than writing on every request). A
// time older than the one stored is ignored.
func (db *DB) TouchHosts(ctx context.Context, seen map[string]Seen) error {
	if len(seen) == 0 {
		return nil
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE hosts SET last_seen = ?,
			remote_addr = CASE WHEN ? = '' THEN remote_addr ELSE ? END
			WHERE id = ? AND last_seen < ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, s := range seen {
			n := ts(s.Time)
			if _, err := stmt.ExecContext(ctx, n, s.RemoteAddr, s.RemoteAddr, id, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: recording %d check-ins: %w", len(seen), err)
	}
	return nil
}

// RevokeNodeKeys revokes every node key of a host: its agent gets
// node_invalid on its next request and must enroll again (with a valid
// enroll secret). It returns how many keys were revoked.
func (db *DB) RevokeNodeKeys(ctx context.Context, hostID string) (int, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE node_keys SET revoked_at = ? WHERE host_id = ? AND revoked_at = 0`,
		ts(db.now()), hostID)
	db.hostChanged(hostID)
	if err != nil {
		return 0, fmt.Errorf("state: revoking node keys of %q: %w", hostID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// RemoveHost deletes a host and its node keys. Its campaign results stay
// (they are history). Removing an unknown host is vigil.ErrNotFound.
func (db *DB) RemoveHost(ctx context.Context, hostID string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM hosts WHERE id = ?`, hostID)
	db.hostChanged(hostID)
	if err != nil {
		return fmt.Errorf("state: removing host %q: %w", hostID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: removing host %q: %w", hostID, vigil.ErrNotFound)
	}
	return nil
}

// EnrollSecret is one stored enroll secret (never the secret itself).
type EnrollSecret struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// AddEnrollSecret stores an enroll secret under a unique name. Several
// can be valid at once, which is how a secret is rotated: add the new one,
// roll it out, then revoke (or let expire) the old one. A zero expiresAt
// never expires.
func (db *DB) AddEnrollSecret(ctx context.Context, name, secret string, expiresAt time.Time) error {
	if name == "" || len(secret) < 16 {
		return fmt.Errorf("state: an enroll secret needs a name and at least 16 characters: %w", vigil.ErrInvalid)
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO enroll_secrets (name, hash, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		name, hashSecret(secret), ts(db.now()), ts(expiresAt))
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("state: enroll secret %q exists: %w", name, vigil.ErrConflict)
		}
		return fmt.Errorf("state: adding enroll secret %q: %w", name, err)
	}
	return nil
}

// RevokeEnrollSecret makes a stored secret invalid for new enrollments;
// hosts already enrolled with it keep their node keys.
func (db *DB) RevokeEnrollSecret(ctx context.Context, name string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE enroll_secrets SET revoked_at = ? WHERE name = ? AND revoked_at = 0`,
		ts(db.now()), name)
	if err != nil {
		return fmt.Errorf("state: revoking enroll secret %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("state: enroll secret %q: %w", name, vigil.ErrNotFound)
	}
	return nil
}

// EnrollSecrets lists the stored secrets' metadata.
func (db *DB) EnrollSecrets(ctx context.Context) ([]EnrollSecret, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, created_at, expires_at, revoked_at FROM enroll_secrets ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("state: listing enroll secrets: %w", err)
	}
	defer rows.Close()
	var out []EnrollSecret
	for rows.Next() {
		var s EnrollSecret
		var c, e, r int64
		if err := rows.Scan(&s.Name, &c, &e, &r); err != nil {
			return nil, fmt.Errorf("state: listing enroll secrets: %w", err)
		}
		s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromTS(c), fromTS(e), fromTS(r)
		out = append(out, s)
	}
	return out, rows.Err()
}

// CheckEnrollSecret reports whether secret matches a stored secret that is
// neither revoked nor expired at now, and which one. Every candidate is
// compared in constant time, and all of them are compared, so timing says
// nothing about which (or whether one) matched.
func (db *DB) CheckEnrollSecret(ctx context.Context, secret string, now time.Time) (name string, ok bool, err error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, hash FROM enroll_secrets
		WHERE revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`, ts(now))
	if err != nil {
		return "", false, fmt.Errorf("state: checking enroll secret: %w", err)
	}
	defer rows.Close()
	want := hashSecret(secret)
	for rows.Next() {
		var n string
		var h []byte
		if err := rows.Scan(&n, &h); err != nil {
			return "", false, fmt.Errorf("state: checking enroll secret: %w", err)
		}
		if subtle.ConstantTimeCompare(h, want) == 1 && !ok {
			name, ok = n, true
		}
	}
	return name, ok, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
