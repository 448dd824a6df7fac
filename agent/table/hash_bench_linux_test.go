package table

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkHashFile hashes one large file with the hash table and with
// sha256sum in the same run, so their ratio can be quoted. The file is 1 GiB
// unless VIGIL_HASH_BYTES says otherwise; it is written once (random bytes)
// and is in the page cache for both, so the comparison is of hashing, not
// of the disk.
//
//	go test ./agent/table -run '^$' -bench HashFile -benchtime=3x
func BenchmarkHashFile(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("VIGIL_HASH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("VIGIL_HASH_BYTES=%q: %v", s, err)
		}
		size = n
	}
	path := filepath.Join(b.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()

	var ours, theirs string
	b.Run("hash_table", func(b *testing.B) {
		e := openTest(b, Options{})
		b.SetBytes(size)
		for b.Loop() {
			res, err := e.Query(context.Background(), "SELECT sha256 FROM hash WHERE path = '"+path+"'")
			if err != nil || len(res.Rows) != 1 {
				b.Fatal(err, res.Rows)
			}
			ours = res.Rows[0]["sha256"]
		}
	})
	b.Run("sha256sum", func(b *testing.B) {
		if _, err := exec.LookPath("sha256sum"); err != nil {
			b.Skip("no sha256sum on this machine")
		}
		b.SetBytes(size)
		for b.Loop() {
			out, err := exec.Command("sha256sum", path).Output()
			if err != nil {
				b.Fatal(err)
			}
			theirs = strings.Fields(string(out))[0]
		}
	})
	if ours != "" && theirs != "" && ours != theirs {
		b.Fatalf("hash table says %s, sha256sum says %s", ours, theirs)
	}
}
