package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAgainstModel runs random appends, peeks, acks and reopens against a
// plain slice and checks the spool always agrees with it.
func TestAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7))
			dir := t.TempDir()
			o := Options{Dir: dir, SegmentBytes: int64(200 + rng.IntN(2000)), MaxRecords: 50 + rng.IntN(200)}
			s := open(t, dir, o)
			defer func() { s.Close() }()
			var model [][]byte // pending records, oldest first
			next := 0
			for step := 0; step < 400; step++ {
				switch op := rng.IntN(10); {
				case op < 4: // append a batch
					n := 1 + rng.IntN(20)
					var batch [][]byte
					for i := 0; i < n; i++ {
						b := []byte(fmt.Sprintf("r%d-%s", next, bytes.Repeat([]byte("z"), rng.IntN(100))))
						next++
						batch = append(batch, b)
					}
					if _, err := s.Append(batch...); err != nil {
						t.Fatal(err)
					}
					model = append(model, batch...)
					if len(model) > o.MaxRecords {
						model = model[len(model)-o.MaxRecords:]
					}
				case op < 7: // peek and maybe ack a prefix
					k := 1 + rng.IntN(40)
					recs, err := s.Peek(k, 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					want := min(k, len(model))
					if len(recs) != want {
						t.Fatalf("step %d: peek %d got %d records, model has %d", step, k, len(recs), len(model))
					}
					for i, r := range recs {
						if !bytes.Equal(r.Data, model[i]) {
							t.Fatalf("step %d: record %d = %q, want %q", step, i, r.Data, model[i])
						}
					}
					if len(recs) > 0 && rng.IntN(3) > 0 {
						j := rng.IntN(len(recs))
						if err := s.Ack(recs[j].Seq); err != nil {
							t.Fatal(err)
						}
						model = model[j+1:]
					}
				case op < 8: // sync
					if err := s.Sync(); err != nil {
						t.Fatal(err)
					}
				default: // reopen
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = open(t, dir, o)
				}
				if s.Len() != len(model) {
					t.Fatalf("step %d: Len %d, model %d", step, s.Len(), len(model))
				}
			}
		})
	}
}
