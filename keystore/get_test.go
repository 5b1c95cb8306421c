package keystore

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Get returns what Put stored, and ErrNotFound for a key that is not
// stored, whose index entry is gone, or whose item is damaged (adding the
// key again must replace such an item, not fail on it).
func TestKeyringGet(t *testing.T) {
	ctx := context.Background()
	k, raw := newFakeKeyring(t)
	a := storedKeyFor(t, genEd25519, "a", Settings{Confirm: true, Allow: []string{"h1"}, MaxForwardDepth: depth(0)})
	b := storedKeyFor(t, genEd25519, "b", Settings{})
	if err := k.Put(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := k.Get(ctx, a.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, []StoredKey{got}, a)
	clear(got.PrivateKeyPEM)

	if _, err := k.Get(ctx, b.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a key never stored: %v, want ErrNotFound", err)
	}

	// An item left by an interrupted Put but not in the index is not stored.
	if err := k.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := k.writeIndex(ctx, []string{a.Fingerprint}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(ctx, b.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unindexed item: %v, want ErrNotFound", err)
	}

	raw.mu.Lock()
	raw.items[a.Fingerprint] = itemPrefix + "not base64!"
	raw.mu.Unlock()
	_, err = k.Get(ctx, a.Fingerprint)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Get of a damaged item: %v, want ErrNotFound saying damaged", err)
	}
}

func TestNoneStoreGet(t *testing.T) {
	if _, err := NewMemory().Get(context.Background(), "SHA256:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("none store Get: %v, want ErrNotFound", err)
	}
}
