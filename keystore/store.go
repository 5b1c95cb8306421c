package keystore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// ErrUnavailable is wrapped by every Store error that means "the keyring
// cannot be used right now" (no session bus, no Secret Service, locked,
// no answer in time). The agent keeps serving and retries loading later.
var ErrUnavailable = errors.New("keyring unavailable")

// ErrLocked is wrapped, with ErrUnavailable, by Store errors that mean the
// keyring is locked: the user can unlock it and try again.
var ErrLocked = errors.New("keyring locked")

// ErrNotFound is returned by Store.Delete for a key that is not stored.
var ErrNotFound = errors.New("key is not in the keystore")

// Settings are the per-key settings stored with the key. It is
// policy.Settings field for field, kept here because keystore and policy
// never import each other; callers convert with policy.Settings(s) and
// keystore.Settings(s), which stop compiling if the two drift apart.
type Settings struct {
	Confirm         bool          // ask before every use
	Allow           []string      // destinations the key may be used for
	Deny            []string      // destinations it must not be used for
	MaxForwardDepth *int          // nil: the policy file decides
	Lifetime        time.Duration // how long the agent keeps it loaded; 0: no limit
}

// StoredKey is one key at rest.
type StoredKey struct {
	Fingerprint   string // ssh.FingerprintSHA256 of the public key; the item's account
	Comment       string
	PrivateKeyPEM []byte // unencrypted "OPENSSH PRIVATE KEY" PEM; wipe after use (Vault.SealStored does)
	Settings      Settings
	Added         time.Time
}

// NewStoredKey marshals priv (any type Seal accepts) for storage and computes
// its fingerprint. Seal priv afterwards if it is to be used: Seal wipes it.
func NewStoredKey(priv any, comment string, settings Settings, added time.Time) (StoredKey, error) {
	pemBytes, err := MarshalPrivateKey(priv, comment)
	if err != nil {
		return StoredKey{}, err
	}
	signer, err := ssh.NewSignerFromKey(normalizeKey(priv))
	if err != nil {
		clear(pemBytes)
		return StoredKey{}, fmt.Errorf("fingerprint key: %w", err)
	}
	return StoredKey{
		Fingerprint:   ssh.FingerprintSHA256(signer.PublicKey()),
		Comment:       comment,
		PrivateKeyPEM: pemBytes,
		Settings:      settings,
		Added:         added.UTC().Truncate(time.Second),
	}, nil
}

// Store is where keys rest between agent runs.
type Store interface {
	// Put stores (or replaces) a key with its settings. The key's item is
	// written before the index, so a crash between the two leaves an item
	// nobody loads, never an index entry without its item.
	Put(ctx context.Context, k StoredKey) error
	// Load returns every stored key. A key that cannot be loaded (listed
	// but missing, corrupt) is reported in problems and the others still
	// load; err is for the store as a whole (errors.Is(err, ErrUnavailable)
	// when it cannot be reached now). Callers wipe each PrivateKeyPEM.
	Load(ctx context.Context) (keys []StoredKey, problems []error, err error)
	// Get returns one stored key (to keep its settings when it is added
	// again); ErrNotFound when it is not stored. The caller wipes its
	// PrivateKeyPEM.
	Get(ctx context.Context, fingerprint string) (StoredKey, error)
	// Delete removes a key: index entry first, then the item. A key that
	// is not stored gives ErrNotFound.
	Delete(ctx context.Context, fingerprint string) error
	// Name is the --keystore value that selects this store.
	Name() string
}

// KeyProblem is one key Load could not return.
type KeyProblem struct {
	Fingerprint string
	Err         error
}

func (p *KeyProblem) Error() string {
	return fmt.Sprintf("stored key %s: %v", p.Fingerprint, p.Err)
}

func (p *KeyProblem) Unwrap() error { return p.Err }

// NewMemory returns the "none" store: nothing persists, keys live only as
// long as the agent. Put keeps nothing (so no extra copy of the key stays in
// unlocked memory), Load returns no keys and Delete reports ErrNotFound.
func NewMemory() Store { return noneStore{} }

type noneStore struct{}

func (noneStore) Put(ctx context.Context, k StoredKey) error { return nil }
func (noneStore) Load(ctx context.Context) ([]StoredKey, []error, error) {
	return nil, nil, nil
}
func (noneStore) Get(ctx context.Context, fingerprint string) (StoredKey, error) {
	return StoredKey{}, hint.Wrap(fmt.Errorf("%s: %w", fingerprint, ErrNotFound), noneKeepsNothing)
}
func (noneStore) Delete(ctx context.Context, fingerprint string) error {
	return hint.Wrap(fmt.Errorf("%s: %w", fingerprint, ErrNotFound), noneKeepsNothing)
}
func (noneStore) Name() string { return "none" }

const noneKeepsNothing = "the \"none\" keystore keeps no keys: use the keyring to store them"
