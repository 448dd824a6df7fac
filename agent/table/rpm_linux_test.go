package table

import (
	"database/sql"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// rpmHeaderBlob encodes tags the way rpmdb stores a header.
func rpmHeaderBlob(strs map[uint32]string, ints map[uint32]uint32) []byte {
	type ent struct{ tag, typ, off, count uint32 }
	var ents []ent
	var store []byte
	tags := make([]uint32, 0)
	for t := range strs {
		tags = append(tags, t)
	}
	sort.Slice(tags, func(i, j int) bool { return tags[i] < tags[j] })
	for _, t := range tags {
		typ := uint32(rpmTypeString)
		if t == rpmTagGroup {
			typ = rpmTypeI18NString
		}
		ents = append(ents, ent{t, typ, uint32(len(store)), 1})
		store = append(append(store, strs[t]...), 0)
	}
	for t, v := range ints {
		for len(store)%4 != 0 {
			store = append(store, 0)
		}
		ents = append(ents, ent{t, rpmTypeInt32, uint32(len(store)), 1})
		store = binary.BigEndian.AppendUint32(store, v)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(ents)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(store)))
	for _, e := range ents {
		for _, v := range []uint32{e.tag, e.typ, e.off, e.count} {
			b = binary.BigEndian.AppendUint32(b, v)
		}
	}
	return append(b, store...)
}

func TestRpmPackages(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var/lib/rpm")
	os.MkdirAll(dir, 0o755)
	db, err := sql.Open("sqlite", filepath.Join(dir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	bash := rpmHeaderBlob(map[uint32]string{
		rpmTagName: "bash", rpmTagVersion: "5.1.8", rpmTagRelease: "9.el9", rpmTagArch: "x86_64",
		rpmTagSourceRPM: "bash-5.1.8-9.el9.src.rpm", rpmTagVendor: "Rocky", rpmTagGroup: "System Environment/Shells",
		rpmTagSHA1Header: "0123abcd",
	}, map[uint32]uint32{rpmTagSize: 7738467, rpmTagInstallTime: 1700000000, rpmTagEpoch: 0})
	key := rpmHeaderBlob(map[uint32]string{rpmTagName: "gpg-pubkey", rpmTagVersion: "350d275d", rpmTagRelease: "6279464b"}, nil)
	for _, b := range [][]byte{bash, key, []byte("garbage")} {
		if _, err := db.Exec("INSERT INTO Packages (blob) VALUES (?)", b); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	e := openTest(t, Options{Root: root})
	wantRows(t, e, "SELECT * FROM rpm_packages",
		row("name", "bash", "version", "5.1.8", "release", "9.el9", "source", "bash-5.1.8-9.el9.src.rpm", "size", "7738467",
			"sha1", "0123abcd", "arch", "x86_64", "epoch", "0", "install_time", "1700000000", "vendor", "Rocky",
			"package_group", "System Environment/Shells"),
		row("name", "gpg-pubkey", "version", "350d275d", "release", "6279464b", "source", "", "size", "",
			"sha1", "", "arch", "", "epoch", "", "install_time", "", "vendor", "", "package_group", ""),
	)
	// Without an rpm database the table is empty, not an error.
	wantRows(t, fixtureEngine(t), "SELECT * FROM rpm_packages")
}

func FuzzParseRpmHeader(f *testing.F) {
	f.Add(rpmHeaderBlob(map[uint32]string{rpmTagName: "x"}, map[uint32]uint32{rpmTagSize: 1}))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseRpmHeader(b)
		if err != nil {
			return
		}
		_ = h.str(rpmTagName)
		h.num(rpmTagSize)
	})
}
