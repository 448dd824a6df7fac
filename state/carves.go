package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vigilhq/vigil"
)

// Carve is a file (or archive of files) an agent uploads in blocks after a
// carve query (osquery's carver: carve/begin, then carve/block).
type Carve struct {
	ID          string    `json:"id"`
	HostID      string    `json:"host_id"`
	CarveID     string    `json:"carve_id"`   // the agent's guid for it
	RequestID   string    `json:"request_id"` // the distributed query that asked for it
	BlockCount  int       `json:"block_count"`
	BlockSize   int       `json:"block_size"`
	CarveSize   int64     `json:"carve_size"`
	Received    int       `json:"received_blocks"`
	CreatedAt   time.Time `json:"created_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// BeginCarve records a carve announced by a host and returns the session
// id the host must present with each block. Only the session id's hash is
// stored. The caller validates sizes against its limits.
func (db *DB) BeginCarve(ctx context.Context, c Carve) (Carve, string, error) {
	if c.BlockCount <= 0 || c.BlockSize <= 0 || c.CarveSize < 0 || c.HostID == "" {
		return Carve{}, "", fmt.Errorf("state: carve needs a host, blocks and sizes: %w", vigil.ErrInvalid)
	}
	c.ID = NewID()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = db.now()
	}
	session := randomSecret("cs_")
	_, err := db.w.ExecContext(ctx, `INSERT INTO carves (id, session_hash, host_id, carve_id, request_id, block_count, block_size, carve_size, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, hashSecret(session), c.HostID, c.CarveID, c.RequestID, c.BlockCount, c.BlockSize, c.CarveSize, ts(c.CreatedAt))
	if err != nil {
		return Carve{}, "", fmt.Errorf("state: beginning carve: %w", err)
	}
	return c, session, nil
}

const carveColumns = `c.id, c.host_id, c.carve_id, c.request_id, c.block_count, c.block_size, c.carve_size, c.created_at, c.completed_at,
	(SELECT count(*) FROM carve_blocks b WHERE b.carve_id = c.id)`

func scanCarve(s scanner) (Carve, error) {
	var c Carve
	var created, completed int64
	if err := s.Scan(&c.ID, &c.HostID, &c.CarveID, &c.RequestID, &c.BlockCount, &c.BlockSize, &c.CarveSize, &created, &completed, &c.Received); err != nil {
		return Carve{}, err
	}
	c.CreatedAt, c.CompletedAt = fromTS(created), fromTS(completed)
	return c, nil
}

// CarveBySession returns the carve a session id belongs to, or
// vigil.ErrNotFound.
func (db *DB) CarveBySession(ctx context.Context, session string) (Carve, error) {
	c, err := scanCarve(db.r.QueryRowContext(ctx, `SELECT `+carveColumns+` FROM carves c WHERE c.session_hash = ?`, hashSecret(session)))
	if errors.Is(err, sql.ErrNoRows) {
		return Carve{}, fmt.Errorf("state: unknown carve session: %w", vigil.ErrNotFound)
	}
	if err != nil {
		return Carve{}, fmt.Errorf("state: reading carve: %w", err)
	}
	return c, nil
}

// Carve returns a carve by id.
func (db *DB) Carve(ctx context.Context, id string) (Carve, error) {
	c, err := scanCarve(db.r.QueryRowContext(ctx, `SELECT `+carveColumns+` FROM carves c WHERE c.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Carve{}, fmt.Errorf("state: carve %q: %w", id, vigil.ErrNotFound)
	}
	if err != nil {
		return Carve{}, fmt.Errorf("state: reading carve %q: %w", id, err)
	}
	return c, nil
}

// Carves lists carves, newest first.
func (db *DB) Carves(ctx context.Context, limit int) ([]Carve, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+carveColumns+` FROM carves c ORDER BY c.created_at DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: listing carves: %w", err)
	}
	defer rows.Close()
	out := []Carve{}
	for rows.Next() {
		c, err := scanCarve(rows)
		if err != nil {
			return nil, fmt.Errorf("state: listing carves: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PutCarveBlock stores one block (a block sent twice keeps the first
// copy) and returns the carve after it, complete when every block is in.
func (db *DB) PutCarveBlock(ctx context.Context, carveID string, blockID int, data []byte) (Carve, error) {
	var c Carve
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO carve_blocks (carve_id, block_id, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			carveID, blockID, data); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE carves SET completed_at = ? WHERE id = ? AND completed_at = 0
			AND block_count = (SELECT count(*) FROM carve_blocks WHERE carve_id = ?)`, ts(db.now()), carveID, carveID); err != nil {
			return err
		}
		var err error
		c, err = scanCarve(tx.QueryRowContext(ctx, `SELECT `+carveColumns+` FROM carves c WHERE c.id = ?`, carveID))
		return err
	})
	if err != nil {
		return Carve{}, fmt.Errorf("state: storing block %d of carve %q: %w", blockID, carveID, err)
	}
	return c, nil
}

// WriteCarve writes a complete carve's bytes to w, block by block.
func (db *DB) WriteCarve(ctx context.Context, id string, w io.Writer) error {
	c, err := db.Carve(ctx, id)
	if err != nil {
		return err
	}
	if c.CompletedAt.IsZero() {
		return fmt.Errorf("state: carve %q has %d of %d blocks: %w", id, c.Received, c.BlockCount, vigil.ErrConflict)
	}
	for i := range c.BlockCount {
		var data []byte
		if err := db.r.QueryRowContext(ctx, `SELECT data FROM carve_blocks WHERE carve_id = ? AND block_id = ?`, id, i).Scan(&data); err != nil {
			return fmt.Errorf("state: reading block %d of carve %q: %w", i, id, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("state: writing carve %q: %w", id, err)
		}
	}
	return nil
}
