package state

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/vigilhq/vigil"
)

// The key cached at enrollment is the host a lookup reads from the
// state, and changes to one host leave the others' keys valid and make
// its own keys invalid at once.
func TestKeyCacheFollowsHostChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, ka := enroll(t, db, "alpha", "u-a")
	b, kb := enroll(t, db, "beta", "u-b")

	// A second handle on the same file has nothing cached: it reads.
	cold, err := open(ctx, path, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	for _, k := range []string{ka, kb} {
		warm, err1 := db.HostByNodeKey(ctx, k)
		read, err2 := cold.HostByNodeKey(ctx, k)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(warm, read) {
			t.Fatalf("cached %+v (%v), read %+v (%v)", warm, err1, read, err2)
		}
	}

	// Re-enrolling alpha with new details: its old key is refused, its new
	// key gives the new details, beta is untouched.
	a2, ka2, err := db.EnrollHost(ctx, vigil.Host{Identifier: "alpha", UUID: "u-a", Hostname: "alpha", Platform: "darwin"})
	if err != nil || a2.ID != a.ID {
		t.Fatalf("re-enroll: %+v, %v", a2, err)
	}
	if _, err := db.HostByNodeKey(ctx, ka); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("old key after re-enroll: %v", err)
	}
	if h, err := db.HostByNodeKey(ctx, ka2); err != nil || h.Platform != "darwin" {
		t.Errorf("new key after re-enroll: %+v, %v", h, err)
	}
	if h, err := db.HostByNodeKey(ctx, kb); err != nil || h.ID != b.ID {
		t.Errorf("beta after alpha re-enrolled: %+v, %v", h, err)
	}

	// Revoking and removing through the other handle is not seen here
	// before the cache's TTL (that is the replica case); through this
	// handle it is seen at once.
	if _, err := db.RevokeNodeKeys(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.HostByNodeKey(ctx, kb); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("revoked key: %v", err)
	}
	if err := db.RemoveHost(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.HostByNodeKey(ctx, ka2); !errors.Is(err, vigil.ErrNotFound) {
		t.Errorf("key of a removed host: %v", err)
	}
}

// Forgetting which hosts changed (the bound on that map) makes every
// earlier entry stale rather than wrongly fresh.
func TestKeyCacheChangedBound(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	a, ka := enroll(t, db, "alpha", "u-a")
	db.keys.mu.Lock()
	db.keys.changed = make(map[string]uint64, keyCacheMax)
	for i := range keyCacheMax {
		db.keys.changed[strconv.Itoa(i)] = 0
	}
	db.keys.mu.Unlock()
	db.hostChanged("someone-else")
	if _, ok := db.cachedHostByHash(string(hashSecret(ka))); ok {
		t.Error("entry older than the reset still fresh")
	}
	if h, err := db.HostByNodeKey(ctx, ka); err != nil || h.ID != a.ID {
		t.Errorf("lookup after reset: %+v, %v", h, err)
	}
	if _, ok := db.cachedHostByHash(string(hashSecret(ka))); !ok {
		t.Error("entry read after the reset not cached")
	}
}
