package state

import (
	"context"
	"errors"
	"testing"

	"github.com/vigilhq/vigil"
)

func testConfigVersionsAndLabels(t *testing.T, db *DB) {
	ctx := context.Background()
	if v, err := db.LatestConfig(ctx); err != nil || v.Version != 0 {
		t.Fatalf("LatestConfig on empty = %+v, %v", v, err)
	}
	v1, err := db.PutConfig(ctx, `{"a":1}`, "alice", "first", 0, &AuditEntry{Actor: "alice", Action: "config.update"})
	if err != nil || v1.Version != 1 {
		t.Fatalf("PutConfig = %+v, %v", v1, err)
	}
	if _, err := db.PutConfig(ctx, `{"a":2}`, "bob", "", 0, nil); !errors.Is(err, vigil.ErrConflict) {
		t.Errorf("stale base: %v", err)
	}
	v2, err := db.PutConfig(ctx, `{"a":3}`, "bob", "", -1, nil)
	if err != nil || v2.Version != 2 {
		t.Fatalf("PutConfig unconditional = %+v, %v", v2, err)
	}
	latest, _ := db.LatestConfig(ctx)
	if latest.Version != 2 || latest.Doc != `{"a":3}` || latest.Actor != "bob" {
		t.Errorf("latest %+v", latest)
	}
	old, err := db.Config(ctx, 1)
	if err != nil || old.Doc != `{"a":1}` || old.Comment != "first" {
		t.Errorf("version 1 %+v %v", old, err)
	}
	if _, err := db.Config(ctx, 9); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("version 9: %v", err)
	}
	list, _ := db.ConfigVersions(ctx, 10)
	if len(list) != 2 || list[0].Version != 2 || list[0].Doc != "" {
		t.Errorf("versions %+v", list)
	}
	if log, _ := db.AuditLog(ctx, AuditFilter{Action: "config.update"}); len(log) != 1 || log[0].Detail["version"] == nil {
		t.Errorf("audit %+v", log)
	}

	h, _ := enroll(t, db, "web1", "")
	if err := db.SetHostLabels(ctx, h.ID, []string{"role:web", "env:prod", "role:web"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.HostLabels(ctx, h.ID); len(got) != 2 || got[0] != "env:prod" || got[1] != "role:web" {
		t.Errorf("labels %v", got)
	}
	if ids, _ := db.HostsWithLabel(ctx, "role:web"); len(ids) != 1 || ids[0] != h.ID {
		t.Errorf("HostsWithLabel %v", ids)
	}
	if err := db.SetHostLabels(ctx, h.ID, []string{"Bad Label"}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("bad label: %v", err)
	}
	if err := db.SetHostLabels(ctx, "ghost", []string{"x"}); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("unknown host: %v", err)
	}
	if err := db.SetHostLabels(ctx, h.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.HostLabels(ctx, h.ID); len(got) != 0 {
		t.Errorf("labels after clearing %v", got)
	}
}

func TestConfigVersionsAndLabels(t *testing.T) { forEachBackend(t, testConfigVersionsAndLabels) }

func testCarveStorage(t *testing.T, db *DB) {
	ctx := context.Background()
	h, _ := enroll(t, db, "c", "")
	c, session, err := db.BeginCarve(ctx, Carve{HostID: h.ID, CarveID: "g", BlockCount: 2, BlockSize: 3, CarveSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.CarveBySession(ctx, session); err != nil || got.ID != c.ID {
		t.Fatalf("CarveBySession = %+v %v", got, err)
	}
	if _, err := db.CarveBySession(ctx, session+"x"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("wrong session: %v", err)
	}
	db.PutCarveBlock(ctx, c.ID, 1, []byte("de"))
	got, _ := db.PutCarveBlock(ctx, c.ID, 0, []byte("abc"))
	if got.Received != 2 || got.CompletedAt.IsZero() {
		t.Fatalf("after both blocks %+v", got)
	}
	var b bytesBuffer
	if err := db.WriteCarve(ctx, c.ID, &b); err != nil || string(b) != "abcde" {
		t.Errorf("WriteCarve = %q %v", b, err)
	}
	if one, err := db.Carve(ctx, c.ID); err != nil || one.CarveSize != 5 || one.HostID != h.ID {
		t.Errorf("Carve = %+v %v", one, err)
	}
	if _, err := db.Carve(ctx, "nope"); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("Carve(nope) = %v", err)
	}
	if all, err := db.Carves(ctx, 10); err != nil || len(all) != 1 || all[0].Received != 2 {
		t.Errorf("Carves = %+v %v", all, err)
	}
	if _, _, err := db.BeginCarve(ctx, Carve{HostID: h.ID}); !errors.Is(err, vigil.ErrInvalid) {
		t.Errorf("empty carve: %v", err)
	}
}

func TestCarveStorage(t *testing.T) { forEachBackend(t, testCarveStorage) }

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }
