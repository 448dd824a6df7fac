package table

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

var rpmPackagesTable = &tableDef{schema: rpmPackagesSchema, gen: genRpmPackages}

// rpmPackagesSchema is specs/linux/rpm_packages.table (Linux columns).
var rpmPackagesSchema = Schema{
	Name:        "rpm_packages",
	Description: "RPM packages that are currently installed on the host system.",
	Columns: []Column{
		{Name: "name", Type: TypeText, Index: true},
		{Name: "version", Type: TypeText, Index: true, Collate: "version_rhel"},
		{Name: "release", Type: TypeText, Index: true},
		{Name: "source", Type: TypeText},
		{Name: "size", Type: TypeBigint},
		{Name: "sha1", Type: TypeText, Collate: "nocase"},
		{Name: "arch", Type: TypeText, Index: true},
		{Name: "epoch", Type: TypeInteger, Index: true},
		{Name: "install_time", Type: TypeInteger},
		{Name: "vendor", Type: TypeText},
		{Name: "package_group", Type: TypeText},
		{Name: "pid_with_namespace", Type: TypeInteger, Hidden: true},
		{Name: "mount_namespace_id", Type: TypeText, Hidden: true},
	},
}

// rpmSQLiteDB is where rpm 4.16+ keeps its database. Older Berkeley DB
// ("Packages") and SUSE's NDB ("Packages.db") formats are not read: on
// such hosts, and on hosts without rpm, the table has no rows.
const rpmSQLiteDB = "/var/lib/rpm/rpmdb.sqlite"

// RPM header tags and types we read.
const (
	rpmTagSHA1Header  = 269
	rpmTagName        = 1000
	rpmTagVersion     = 1001
	rpmTagRelease     = 1002
	rpmTagEpoch       = 1003
	rpmTagInstallTime = 1008
	rpmTagSize        = 1009
	rpmTagVendor      = 1011
	rpmTagGroup       = 1016
	rpmTagArch        = 1022
	rpmTagSourceRPM   = 1044

	rpmTypeInt32       = 4
	rpmTypeInt64       = 5
	rpmTypeString      = 6
	rpmTypeStringArray = 8
	rpmTypeI18NString  = 9
)

func genRpmPackages(q *queryCtx) ([]Row, error) {
	if _, err := q.fs.Stat(rpmSQLiteDB); err != nil {
		return nil, nil
	}
	// A separate read-only connection: never the engine's own (vtab
	// callbacks must not re-enter it).
	dsn := "file:" + (&url.URL{Path: q.fs.real(rpmSQLiteDB)}).EscapedPath() + "?mode=ro"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening rpm database: %w", err)
	}
	defer db.Close()
	ctx := q.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	rows, err := db.QueryContext(ctx, "SELECT blob FROM Packages")
	if err != nil {
		q.log.Debug("reading rpm database", "path", rpmSQLiteDB, "err", err)
		return nil, nil
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var blob []byte
		if err := rows.Scan(&blob); err != nil {
			return nil, fmt.Errorf("reading rpm database: %w", err)
		}
		h, err := parseRpmHeader(blob)
		if err != nil {
			q.log.Debug("skipping rpm header", "err", err)
			continue
		}
		r := Row{
			"name": h.str(rpmTagName), "version": h.str(rpmTagVersion), "release": h.str(rpmTagRelease),
			"source": h.str(rpmTagSourceRPM), "sha1": h.str(rpmTagSHA1Header), "arch": h.str(rpmTagArch),
			"vendor": h.str(rpmTagVendor), "package_group": h.str(rpmTagGroup),
		}
		if v, ok := h.num(rpmTagSize); ok {
			r["size"] = v
		}
		if v, ok := h.num(rpmTagEpoch); ok {
			r["epoch"] = v
		}
		if v, ok := h.num(rpmTagInstallTime); ok {
			r["install_time"] = v
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

type rpmEntry struct {
	typ, count uint32
	data       []byte // from the entry's offset to the end of the store
}

type rpmHeader map[uint32]rpmEntry

// parseRpmHeader decodes a header blob as rpmdb stores it: big-endian
// index count and data size, 16-byte index entries (tag, type, offset,
// count), then the data store.
func parseRpmHeader(b []byte) (rpmHeader, error) {
	if len(b) < 8 {
		return nil, errors.New("rpm header: too short")
	}
	il, dl := binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:])
	if il > 1<<16 || dl > 1<<28 || uint64(8)+uint64(il)*16+uint64(dl) > uint64(len(b)) {
		return nil, fmt.Errorf("rpm header: %d entries and %d bytes do not fit in %d", il, dl, len(b))
	}
	store := b[8+il*16 : 8+il*16+dl]
	h := rpmHeader{}
	for i := uint32(0); i < il; i++ {
		e := b[8+i*16:]
		tag, typ := binary.BigEndian.Uint32(e[0:]), binary.BigEndian.Uint32(e[4:])
		off, count := binary.BigEndian.Uint32(e[8:]), binary.BigEndian.Uint32(e[12:])
		if off >= uint32(len(store)) {
			continue
		}
		h[tag] = rpmEntry{typ: typ, count: count, data: store[off:]}
	}
	return h, nil
}

// str returns a string tag (the first element of arrays and I18N strings).
func (h rpmHeader) str(tag uint32) string {
	e, ok := h[tag]
	if !ok {
		return ""
	}
	switch e.typ {
	case rpmTypeString, rpmTypeStringArray, rpmTypeI18NString:
		s := string(e.data)
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return s
	}
	return ""
}

// num returns the first value of an integer tag.
func (h rpmHeader) num(tag uint32) (int64, bool) {
	e, ok := h[tag]
	if !ok || e.count == 0 {
		return 0, false
	}
	switch {
	case e.typ == rpmTypeInt32 && len(e.data) >= 4:
		return int64(binary.BigEndian.Uint32(e.data)), true
	case e.typ == rpmTypeInt64 && len(e.data) >= 8:
		return int64(binary.BigEndian.Uint64(e.data)), true
	}
	return 0, false
}
