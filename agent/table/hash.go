package table

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

var hashTable = &tableDef{schema: hashSchema, gen: genHash}

// hashSchema is specs/hash.table (Linux columns).
var hashSchema = Schema{
	Name:        "hash",
	Description: "Filesystem hash data.",
	Columns: []Column{
		{Name: "path", Type: TypeText, Required: true, Index: true},
		{Name: "directory", Type: TypeText, Required: true},
		{Name: "md5", Type: TypeText, Collate: "nocase"},
		{Name: "sha1", Type: TypeText, Collate: "nocase"},
		{Name: "sha256", Type: TypeText, Collate: "nocase"},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "mount_namespace_id", Type: TypeText, Hidden: true},
	},
}

// genHash hashes the regular files named by the path and directory
// constraints (read once, all three digests at the same time).
func genHash(q *queryCtx) ([]Row, error) {
	targets, err := targetPaths(q)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, t := range targets {
		if err := q.Err(); err != nil {
			return nil, err
		}
		fi, err := q.fs.Stat(t[0])
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		f, err := q.fs.Open(t[0])
		if err != nil {
			continue
		}
		m, s1, s256 := md5.New(), sha1.New(), sha256.New()
		_, err = io.Copy(io.MultiWriter(m, s1, s256), &ctxReader{q: q, r: f})
		f.Close()
		if err != nil {
			if q.Err() != nil {
				return nil, q.Err()
			}
			continue
		}
		rows = append(rows, Row{
			"path": t[0], "directory": t[1],
			"md5":    hex.EncodeToString(m.Sum(nil)),
			"sha1":   hex.EncodeToString(s1.Sum(nil)),
			"sha256": hex.EncodeToString(s256.Sum(nil)),
		})
	}
	return rows, nil
}

// ctxReader stops a long read when the query is cancelled.
type ctxReader struct {
	q *queryCtx
	r io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.q.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
