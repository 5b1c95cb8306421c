package keystore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// backend is the part of go-keyring we use; tests substitute it.
type backend interface {
	Set(service, account, value string) error
	Get(service, account string) (string, error)
	Delete(service, account string) error
}

type goKeyring struct{}

func (goKeyring) Set(service, account, value string) error {
	return keyring.Set(service, account, value)
}
func (goKeyring) Get(service, account string) (string, error) { return keyring.Get(service, account) }
func (goKeyring) Delete(service, account string) error        { return keyring.Delete(service, account) }

// Keyring is the Store in the OS keyring (Secret Service on Linux, Keychain
// on macOS) through github.com/zalando/go-keyring: one item per key (the
// fingerprint is the account) and an index item (account "index"), because
// go-keyring cannot list items. See item.go for the value format.
//
// Every backend call runs in its own goroutine under a deadline, because
// go-keyring has none: with a display, a locked gnome-keyring shows an unlock
// prompt and the call blocks until someone answers. A call that misses its
// deadline is abandoned, keeps running, and holds the keyring: later calls
// fail fast with a "busy" error until it returns (at most one goroutine is
// ever stuck).
//
// Copies of the key this makes that cannot be wiped: go-keyring takes and
// returns strings, so each Put leaves the item values (base64 text) as a Go
// string, go-keyring's []byte conversion of it and godbus' message buffer;
// each Load leaves godbus' read buffer, go-keyring's []byte and the string it
// returns. All of them are base64 text (the value is base64 of JSON holding
// the PEM, itself base64), never the raw key bytes, and all are garbage as
// soon as the call returns. The []byte decodings of that text are ours and
// are wiped. On Linux the secret crosses the session bus unencrypted (a
// "plain" Secret Service session), as with every go-keyring user.
type Keyring struct {
	service   string
	timeout   time.Duration
	log       *slog.Logger
	be        backend
	preflight func() error
	chunkLen  int
	busy      chan struct{} // one backend call at a time
	mu        chan struct{} // serialises Put and Delete (index read-modify-write)
}

var _ Store = (*Keyring)(nil)

// NewKeyring returns the keyring Store for service ("safe-agent"), giving
// each keyring call at most timeout (a few seconds; 0 means 10s).
//
// Two processes writing the index at the same moment can lose one update
// (go-keyring has no transactions): let one process (the agent) write.
func NewKeyring(service string, timeout time.Duration, log *slog.Logger) *Keyring {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newKeyring(service, timeout, log, goKeyring{}, func() error { return sessionBusCheck(os.Getenv, os.Getuid()) })
}

func newKeyring(service string, timeout time.Duration, log *slog.Logger, be backend, preflight func() error) *Keyring {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Keyring{
		service:   service,
		timeout:   timeout,
		log:       log,
		be:        be,
		preflight: preflight,
		chunkLen:  defaultChunkLen,
		busy:      make(chan struct{}, 1),
		mu:        make(chan struct{}, 1),
	}
}

// Name is "keyring".
func (k *Keyring) Name() string { return "keyring" }

// unavailableError is an ErrUnavailable: a short message, its cause, and
// beside them what the person can do (hint.Hinter; the CLI prints it and
// adds its own flag-naming advice).
type unavailableError struct {
	msg    string
	hint   string
	locked bool
	cause  error
}

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + " (" + e.cause.Error() + ")"
}
func (e *unavailableError) Unwrap() error { return e.cause }
func (e *unavailableError) Hint() string  { return e.hint }
func (e *unavailableError) Is(target error) bool {
	return target == ErrUnavailable || target == ErrLocked && e.locked
}

// What the keyring's failures mean, and what to do about each.
const (
	msgNoSecretService  = "no Secret Service on the session bus"
	hintNoSecretService = "start gnome-keyring-daemon (or KeePassXC with Secret Service enabled)"
	msgLocked           = "the login keyring is locked"
	hintLocked          = "unlock it (log in to the desktop, or `gnome-keyring-daemon --unlock`)"
	msgNoBus            = "no D-Bus session bus"
	hintNoBus           = "start safe-agent from your desktop session (or export DBUS_SESSION_BUS_ADDRESS)"
	hintUnlockPrompt    = "unlock the login keyring (a desktop prompt may be waiting)"
)

// sessionBusCheck fails fast when godbus would have to run dbus-launch to
// find a session bus: that starts a bus (and a keyring daemon) nobody stops.
// godbus itself uses DBUS_SESSION_BUS_ADDRESS, then /run/user/UID/bus.
func sessionBusCheck(getenv func(string) string, uid int) error {
	if addr := getenv("DBUS_SESSION_BUS_ADDRESS"); addr != "" && addr != "autolaunch:" {
		return nil
	}
	if fi, err := os.Stat(fmt.Sprintf("/run/user/%d/bus", uid)); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return nil
	}
	return &unavailableError{msg: msgNoBus + ": DBUS_SESSION_BUS_ADDRESS is not set", hint: hintNoBus}
}

// translate turns a go-keyring error into one that says what to do.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, keyring.ErrNotFound) {
		return errNotFound
	}
	s := err.Error()
	e := &unavailableError{cause: fmt.Errorf("keyring %s: %w", op, err)}
	switch {
	case strings.Contains(s, "org.freedesktop.secrets was not provided"),
		strings.Contains(s, "org.freedesktop.DBus.Error.ServiceUnknown"),
		strings.Contains(s, "org.freedesktop.DBus.Error.NameHasNoOwner"):
		e.msg, e.hint = msgNoSecretService, hintNoSecretService
	case strings.Contains(s, "failed to unlock"):
		e.msg, e.hint, e.locked = msgLocked, hintLocked, true
	case strings.Contains(s, "dbus-launch"), strings.Contains(s, "couldn't determine address of session bus"):
		e.msg, e.hint = msgNoBus, hintNoBus
	case strings.Contains(s, "dial unix"), strings.Contains(s, "connection refused"), strings.Contains(s, "EOF"):
		e.msg, e.hint = "cannot reach the D-Bus session bus", "check that the desktop session is still running"
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return fmt.Errorf("keyring %s: item too large for this keyring: %w", op, err)
	default:
		e.msg, e.hint = "the keyring failed", "check that the Secret Service (gnome-keyring, KeePassXC) works"
	}
	return e
}

// errNotFound is an item that does not exist (internal; Delete maps it to
// ErrNotFound).
var errNotFound = errors.New("keyring item not found")

// call runs fn in a goroutine under the keyring deadline.
func (k *Keyring) call(ctx context.Context, op string, fn func() (string, error)) (string, error) {
	if err := k.preflight(); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	select {
	case k.busy <- struct{}{}:
	case <-ctx.Done():
		if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
			return "", err
		}
		return "", &unavailableError{msg: fmt.Sprintf("the keyring is still busy with an earlier request that got no answer (%s)", op), hint: hintUnlockPrompt}
	}
	type result struct {
		v   string
		err error
	}
	done := make(chan result) // unbuffered: the worker hands over, or sees abandon
	abandon := make(chan struct{})
	go func() {
		defer func() { <-k.busy }()
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r = result{err: fmt.Errorf("go-keyring panicked: %v", p)}
				}
			}()
			r.v, r.err = fn()
		}()
		select {
		case done <- r:
		case <-abandon: // nobody reads r.v; a string cannot be wiped, drop it
		}
	}()
	select {
	case r := <-done:
		return r.v, translate(op, r.err)
	case <-ctx.Done():
		close(abandon)
		if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
			return "", err
		}
		return "", &unavailableError{msg: fmt.Sprintf("the keyring did not answer within %s (%s)", k.timeout, op), hint: hintUnlockPrompt}
	}
}

func (k *Keyring) get(ctx context.Context, account string) (string, error) {
	return k.call(ctx, "read "+account, func() (string, error) { return k.be.Get(k.service, account) })
}

func (k *Keyring) set(ctx context.Context, account, value string) error {
	_, err := k.call(ctx, "write "+account, func() (string, error) { return "", k.be.Set(k.service, account, value) })
	return err
}

func (k *Keyring) del(ctx context.Context, account string) error {
	_, err := k.call(ctx, "delete "+account, func() (string, error) { return "", k.be.Delete(k.service, account) })
	return err
}

func (k *Keyring) lock(ctx context.Context) error {
	select {
	case k.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (k *Keyring) unlock() { <-k.mu }

// readHeader reads an item's main value.
func (k *Keyring) readHeader(ctx context.Context, account string) (header, error) {
	v, err := k.get(ctx, account)
	if err != nil {
		return header{}, err
	}
	// The header keeps a view of the base64 text: one []byte copy of the
	// string, wiped by readRecord.
	return parseHeader([]byte(v))
}

// readRecord reads and decodes a record (single or chunked). The caller
// wipes the result.
func (k *Keyring) readRecord(ctx context.Context, account string) ([]byte, error) {
	h, err := k.readHeader(ctx, account)
	if err != nil {
		return nil, err
	}
	if h.chunks == 0 {
		defer clear(h.single)
		return decodeBase64(h.single)
	}
	var text []byte
	defer func() { clear(text) }()
	for i := 1; i <= h.chunks; i++ {
		v, err := k.get(ctx, h.chunkAccount(account, i))
		if errors.Is(err, errNotFound) {
			return nil, corruptf("chunk %d of %d is missing", i, h.chunks)
		}
		if err != nil {
			return nil, err
		}
		text = growAppend(text, v)
	}
	payload, err := decodeBase64(text)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(payload)
	if subtle.ConstantTimeCompare(sum[:], h.sum[:]) != 1 {
		clear(payload)
		return nil, corruptf("chunks do not match their manifest (a write was interrupted?)")
	}
	return payload, nil
}

// growAppend appends s to b, wiping b's old array when it must grow.
func growAppend(b []byte, s string) []byte {
	if cap(b)-len(b) >= len(s) {
		return append(b, s...)
	}
	nb := make([]byte, len(b), 2*cap(b)+len(s))
	copy(nb, b)
	clear(b)
	return append(nb, s...)
}

// writeRecord writes a record: chunks first, then the main item. It returns
// the chunk accounts of the record it replaced, for the caller to delete
// once the new record is referenced.
func (k *Keyring) writeRecord(ctx context.Context, account string, payload []byte) (stale []string, err error) {
	old, err := k.readHeader(ctx, account)
	switch {
	case err == nil, errors.Is(err, errCorrupt), errors.Is(err, errNotFound):
	default:
		return nil, err
	}
	clear(old.single)
	main, chunks, sumHex := encodeItems(payload, k.chunkLen)
	defer func() {
		clear(main)
		for _, c := range chunks {
			clear(c)
		}
	}()
	for i, c := range chunks {
		if err := k.set(ctx, chunkAccount(account, sumHex, i+1), string(c)); err != nil {
			return nil, err
		}
	}
	if err := k.set(ctx, account, string(main)); err != nil {
		return nil, err
	}
	if old.chunks > 0 && old.sumText != sumHex {
		for i := 1; i <= old.chunks; i++ {
			stale = append(stale, old.chunkAccount(account, i))
		}
	}
	return stale, nil
}

func (k *Keyring) deleteStale(ctx context.Context, accounts []string) {
	for _, a := range accounts {
		if err := k.del(ctx, a); err != nil && !errors.Is(err, errNotFound) {
			k.log.Warn("could not delete an unused keyring chunk", "account", a, "err", err)
		}
	}
}

// readIndex returns the stored fingerprints (none when there is no index).
func (k *Keyring) readIndex(ctx context.Context) ([]string, error) {
	payload, err := k.readRecord(ctx, indexAccount)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if errors.Is(err, errCorrupt) {
		return nil, k.corruptIndex(err)
	}
	if err != nil {
		return nil, err
	}
	fps, err := decodeIndex(payload)
	if err != nil {
		return nil, k.corruptIndex(err)
	}
	return fps, nil
}

func (k *Keyring) corruptIndex(err error) error {
	return fmt.Errorf("the keyring's index of safe-agent keys is damaged (%w): delete it with `secret-tool clear service %s username %s` and add the keys again", err, k.service, indexAccount)
}

func (k *Keyring) writeIndex(ctx context.Context, fps []string) error {
	payload, err := encodeIndex(fps)
	if err != nil {
		return fmt.Errorf("encode keyring index: %w", err)
	}
	stale, err := k.writeRecord(ctx, indexAccount, payload)
	if err != nil {
		return err
	}
	k.deleteStale(ctx, stale)
	return nil
}

// Put stores k: the key's item (its chunks, then its main item), then the
// index.
func (k *Keyring) Put(ctx context.Context, sk StoredKey) error {
	payload, err := encodeStoredKey(sk)
	if err != nil {
		return err
	}
	defer clear(payload)
	if err := k.lock(ctx); err != nil {
		return err
	}
	defer k.unlock()
	stale, err := k.writeRecord(ctx, sk.Fingerprint, payload)
	if err != nil {
		return fmt.Errorf("store key %s: %w", sk.Fingerprint, err)
	}
	fps, err := k.readIndex(ctx)
	if err != nil {
		return fmt.Errorf("store key %s: %w", sk.Fingerprint, err)
	}
	if !slices.Contains(fps, sk.Fingerprint) {
		if err := k.writeIndex(ctx, append(fps, sk.Fingerprint)); err != nil {
			return fmt.Errorf("store key %s: update index: %w", sk.Fingerprint, err)
		}
	}
	k.deleteStale(ctx, stale)
	return nil
}

// Load reads the index, then every key it lists.
func (k *Keyring) Load(ctx context.Context) (keys []StoredKey, problems []error, err error) {
	fps, err := k.readIndex(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load keys: %w", err)
	}
	for _, fp := range fps {
		var sk StoredKey
		WithSecretErasure(func() { sk, err = k.loadOne(ctx, fp) })
		switch {
		case err == nil:
			keys = append(keys, sk)
		case errors.Is(err, errNotFound):
			problems = append(problems, &KeyProblem{Fingerprint: fp, Err: fmt.Errorf("listed in the keyring index but its item is missing (the write was interrupted, or it was deleted by hand): remove the entry with `safe-agent remove %s`", fp)})
		case errors.Is(err, errCorrupt):
			problems = append(problems, &KeyProblem{Fingerprint: fp, Err: fmt.Errorf("%w: remove it with `safe-agent remove %s` and add the key again", err, fp)})
		default:
			for _, sk := range keys {
				clear(sk.PrivateKeyPEM)
			}
			return nil, problems, fmt.Errorf("load key %s: %w", fp, err)
		}
	}
	return keys, problems, nil
}

// Get reads one key the index lists. An item the index does not list is
// not stored (Load would not load it): ErrNotFound.
func (k *Keyring) Get(ctx context.Context, fingerprint string) (StoredKey, error) {
	fps, err := k.readIndex(ctx)
	if err != nil {
		return StoredKey{}, fmt.Errorf("read key %s: %w", fingerprint, err)
	}
	if !slices.Contains(fps, fingerprint) {
		return StoredKey{}, fmt.Errorf("%s: %w", fingerprint, ErrNotFound)
	}
	var sk StoredKey
	WithSecretErasure(func() { sk, err = k.loadOne(ctx, fingerprint) })
	switch {
	case errors.Is(err, errNotFound):
		return StoredKey{}, fmt.Errorf("%s: listed in the keyring index but its item is missing: %w", fingerprint, ErrNotFound)
	case errors.Is(err, errCorrupt):
		// Nothing can be kept from a damaged item: adding the key again
		// replaces it, as Load's message tells the user to do.
		return StoredKey{}, fmt.Errorf("%s: its keyring item is damaged (%v): %w", fingerprint, err, ErrNotFound)
	case err != nil:
		return StoredKey{}, fmt.Errorf("read key %s: %w", fingerprint, err)
	}
	return sk, nil
}

func (k *Keyring) loadOne(ctx context.Context, fp string) (StoredKey, error) {
	payload, err := k.readRecord(ctx, fp)
	if err != nil {
		return StoredKey{}, err
	}
	defer clear(payload)
	sk, err := decodeStoredKey(payload)
	if err != nil {
		return StoredKey{}, err
	}
	if sk.Fingerprint != fp {
		clear(sk.PrivateKeyPEM)
		return StoredKey{}, corruptf("item holds key %s", sk.Fingerprint)
	}
	return sk, nil
}

// Delete removes the index entry, then the item's chunks, then its main item.
func (k *Keyring) Delete(ctx context.Context, fingerprint string) error {
	if err := k.lock(ctx); err != nil {
		return err
	}
	defer k.unlock()
	fps, err := k.readIndex(ctx)
	if err != nil {
		return fmt.Errorf("remove key %s: %w", fingerprint, err)
	}
	listed := slices.Contains(fps, fingerprint)
	if listed {
		if err := k.writeIndex(ctx, slices.DeleteFunc(fps, func(s string) bool { return s == fingerprint })); err != nil {
			return fmt.Errorf("remove key %s: update index: %w", fingerprint, err)
		}
	}
	h, err := k.readHeader(ctx, fingerprint)
	switch {
	case errors.Is(err, errNotFound):
		if !listed {
			return fmt.Errorf("%s: %w", fingerprint, ErrNotFound)
		}
		return nil
	case errors.Is(err, errCorrupt):
	case err != nil:
		return fmt.Errorf("remove key %s: %w", fingerprint, err)
	}
	clear(h.single)
	for i := 1; i <= h.chunks; i++ {
		if err := k.del(ctx, h.chunkAccount(fingerprint, i)); err != nil && !errors.Is(err, errNotFound) {
			return fmt.Errorf("remove key %s: %w", fingerprint, err)
		}
	}
	if err := k.del(ctx, fingerprint); err != nil && !errors.Is(err, errNotFound) {
		return fmt.Errorf("remove key %s: %w", fingerprint, err)
	}
	return nil
}
