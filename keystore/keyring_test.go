package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/safe-agent/safe-agent/internal/hint"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zalando/go-keyring"
)

// fakeBackend is an in-memory go-keyring with fault injection.
type fakeBackend struct {
	mu       sync.Mutex
	items    map[string]string // account -> value
	maxValue int               // the largest value Set was given
	// failSet, if set, is consulted before each Set; an error aborts it
	// (simulating a crash or a keyring that stops answering).
	failSet func(account string) error
	failDel func(account string) error
	block   chan struct{} // when non-nil, every call waits on it
	calls   int
}

func newFakeBackend() *fakeBackend { return &fakeBackend{items: map[string]string{}} }

func (f *fakeBackend) wait() {
	f.mu.Lock()
	b := f.block
	f.calls++
	f.mu.Unlock()
	if b != nil {
		<-b
	}
}

func (f *fakeBackend) Set(service, account, value string) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSet != nil {
		if err := f.failSet(account); err != nil {
			return err
		}
	}
	f.maxValue = max(f.maxValue, len(value))
	f.items[account] = value
	return nil
}

func (f *fakeBackend) Get(service, account string) (string, error) {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.items[account]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return v, nil
}

func (f *fakeBackend) Delete(service, account string) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failDel != nil {
		if err := f.failDel(account); err != nil {
			return err
		}
	}
	if _, ok := f.items[account]; !ok {
		return keyring.ErrNotFound
	}
	delete(f.items, account)
	return nil
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeBackend) accounts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.items))
}

func newFakeKeyring(t *testing.T) (*Keyring, *fakeBackend) {
	f := newFakeBackend()
	return newKeyring("safe-agent", 2*time.Second, nil, f, func() error { return nil }), f
}

// storedKeyFor makes a StoredKey of a fresh key of the given generator.
func storedKeyFor(t testing.TB, gen func(testing.TB) any, comment string, s Settings) StoredKey {
	t.Helper()
	sk, err := NewStoredKey(gen(t), comment, s, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func depth(n int) *int { return &n }

// checkRoundTrip asserts that Load returned exactly want (order included).
func checkLoaded(t *testing.T, got []StoredKey, want ...StoredKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("loaded %d keys, want %d: %v", len(got), len(want), fingerprints(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if describe(g) != describe(w) || !bytes.Equal(g.PrivateKeyPEM, w.PrivateKeyPEM) {
			t.Errorf("key %d: loaded %s (PEM equal: %v)\nwant %s", i, describe(g), bytes.Equal(g.PrivateKeyPEM, w.PrivateKeyPEM), describe(w))
		}
	}
}

// describe prints a StoredKey without its private key.
func describe(k StoredKey) string {
	d := "nil"
	if k.Settings.MaxForwardDepth != nil {
		d = fmt.Sprint(*k.Settings.MaxForwardDepth)
	}
	return fmt.Sprintf("%s %q added=%s confirm=%v allow=%q deny=%q depth=%s lifetime=%s",
		k.Fingerprint, k.Comment, k.Added.Format(time.RFC3339), k.Settings.Confirm, k.Settings.Allow, k.Settings.Deny, d, k.Settings.Lifetime)
}

func fingerprints(ks []StoredKey) []string {
	var fps []string
	for _, k := range ks {
		fps = append(fps, k.Fingerprint)
	}
	return fps
}

// testKeyringStore runs the Store contract against a keyring; the real
// Secret Service test reuses it.
func testKeyringStore(t *testing.T, k *Keyring, raw backend, service string) {
	ctx := context.Background()
	ed := storedKeyFor(t, genEd25519, "ed@laptop", Settings{Confirm: true, Allow: []string{"jump.example", "jump.example>*.internal"}, Deny: []string{"*.prod"}, MaxForwardDepth: depth(1), Lifetime: time.Hour})
	ec := storedKeyFor(t, genECDSA(ellipticP384), "ecdsa key", Settings{MaxForwardDepth: depth(0)})
	big := storedKeyFor(t, genRSA(4096), "rsa 4096 — ünïcode comment", Settings{})

	t.Run("empty", func(t *testing.T) {
		keys, problems, err := k.Load(ctx)
		if err != nil || len(keys) != 0 || len(problems) != 0 {
			t.Fatalf("Load of an empty keyring = %v, %v, %v", keys, problems, err)
		}
	})
	t.Run("round-trip", func(t *testing.T) {
		for _, sk := range []StoredKey{ed, ec, big} {
			if err := k.Put(ctx, sk); err != nil {
				t.Fatalf("Put %s: %v", sk.Comment, err)
			}
		}
		keys, problems, err := k.Load(ctx)
		if err != nil || len(problems) != 0 {
			t.Fatalf("Load: %v %v", problems, err)
		}
		checkLoaded(t, keys, ed, ec, big)
		// RSA-4096 does not fit one item: it must have been chunked.
		v, err := raw.Get(service, big.Fingerprint)
		if err != nil || !strings.HasPrefix(v, chunkedPrefix) {
			t.Errorf("RSA-4096 main item = %.40q, %v; want a chunk manifest", v, err)
		}
	})
	t.Run("replace-settings", func(t *testing.T) {
		big2 := big
		big2.Settings = Settings{Confirm: true}
		big2.PrivateKeyPEM = bytes.Clone(big.PrivateKeyPEM)
		big2.Comment = "renamed"
		if err := k.Put(ctx, big2); err != nil {
			t.Fatal(err)
		}
		keys, problems, err := k.Load(ctx)
		if err != nil || len(problems) != 0 {
			t.Fatalf("Load: %v %v", problems, err)
		}
		checkLoaded(t, keys, ed, ec, big2)
	})
	t.Run("delete", func(t *testing.T) {
		if err := k.Delete(ctx, ec.Fingerprint); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Get(service, ec.Fingerprint); !errors.Is(err, keyring.ErrNotFound) {
			t.Errorf("item still there after Delete: %v", err)
		}
		if err := k.Delete(ctx, ec.Fingerprint); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Delete = %v, want ErrNotFound", err)
		}
		keys, _, err := k.Load(ctx)
		if err != nil || len(keys) != 2 || keys[0].Fingerprint != ed.Fingerprint || keys[1].Fingerprint != big.Fingerprint {
			t.Errorf("after Delete, Load = %v, %v", fingerprints(keys), err)
		}
	})
	t.Run("index-entry-without-item", func(t *testing.T) {
		if err := raw.Delete(service, ed.Fingerprint); err != nil {
			t.Fatal(err)
		}
		keys, problems, err := k.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].Fingerprint != big.Fingerprint {
			t.Errorf("loaded %v, want only the RSA key", fingerprints(keys))
		}
		want := "stored key " + ed.Fingerprint + ": listed in the keyring index but its item is missing"
		if len(problems) != 1 || !strings.Contains(problems[0].Error(), want) || !strings.Contains(problems[0].Error(), "safe-agent remove "+ed.Fingerprint) {
			t.Fatalf("problems = %v, want one %q", problems, want)
		}
		// remove clears the dangling entry
		if err := k.Delete(ctx, ed.Fingerprint); err != nil {
			t.Errorf("Delete of a dangling entry: %v", err)
		}
		if _, problems, _ := k.Load(ctx); len(problems) != 0 {
			t.Errorf("problems after Delete: %v", problems)
		}
	})
	t.Run("corrupt-item", func(t *testing.T) {
		if err := k.Put(ctx, ed); err != nil {
			t.Fatal(err)
		}
		if err := raw.Set(service, ed.Fingerprint, itemPrefix+"bm90IGpzb24="); err != nil { // "not json"
			t.Fatal(err)
		}
		keys, problems, err := k.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].Fingerprint != big.Fingerprint {
			t.Errorf("loaded %v, want the RSA key still", fingerprints(keys))
		}
		if len(problems) != 1 || !strings.Contains(problems[0].Error(), "stored key "+ed.Fingerprint+": corrupt keyring item") {
			t.Errorf("problems = %v, want one 'corrupt keyring item' for %s", problems, ed.Fingerprint)
		}
		if err := k.Delete(ctx, ed.Fingerprint); err != nil {
			t.Errorf("Delete of a corrupt item: %v", err)
		}
	})
	t.Run("crash-between-item-and-index", func(t *testing.T) {
		// What a crash after the item write leaves: the item, no index entry.
		payload, err := encodeStoredKey(ec)
		if err != nil {
			t.Fatal(err)
		}
		main, chunks, _ := encodeItems(payload, defaultChunkLen)
		if chunks != nil {
			t.Fatal("ecdsa item unexpectedly chunked")
		}
		if err := raw.Set(service, ec.Fingerprint, string(main)); err != nil {
			t.Fatal(err)
		}
		keys, problems, err := k.Load(ctx)
		if err != nil || len(problems) != 0 {
			t.Fatalf("Load: %v %v", problems, err)
		}
		if slices.Contains(fingerprints(keys), ec.Fingerprint) {
			t.Error("an item without index entry was loaded")
		}
		// Adding the key again adopts the orphan.
		if err := k.Put(ctx, ec); err != nil {
			t.Fatal(err)
		}
		keys, _, _ = k.Load(ctx)
		if !slices.Contains(fingerprints(keys), ec.Fingerprint) {
			t.Error("Put did not add the key to the index")
		}
	})
	t.Run("cleanup", func(t *testing.T) {
		for _, sk := range []StoredKey{ed, ec, big} {
			if err := k.Delete(ctx, sk.Fingerprint); err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("Delete: %v", err)
			}
		}
		for _, a := range []string{ed.Fingerprint, ec.Fingerprint, big.Fingerprint} {
			if _, err := raw.Get(service, a); !errors.Is(err, keyring.ErrNotFound) {
				t.Errorf("%s still stored: %v", a, err)
			}
		}
	})
}

func TestKeyringFake(t *testing.T) {
	k, f := newFakeKeyring(t)
	testKeyringStore(t, k, f, "safe-agent")
	if f.maxValue > defaultChunkLen {
		t.Errorf("largest item value %d bytes, over the %d-byte limit", f.maxValue, defaultChunkLen)
	}
	if accts := f.accounts(); len(accts) != 1 || accts[0] != indexAccount {
		t.Errorf("after deleting every key the keyring holds %v, want only the index", accts)
	}
}

func TestKeyringChunkedRewriteCrash(t *testing.T) {
	ctx := context.Background()
	k, f := newFakeKeyring(t)
	k.chunkLen = 512
	sk := storedKeyFor(t, genEd25519, "first", Settings{})
	if err := k.Put(ctx, sk); err != nil {
		t.Fatal(err)
	}
	before := f.accounts()
	// Rewrite with other settings; "crash" after the first new chunk.
	sk2 := sk
	sk2.PrivateKeyPEM = bytes.Clone(sk.PrivateKeyPEM)
	sk2.Comment = "second"
	n := 0
	f.failSet = func(account string) error {
		if n++; n > 1 {
			return errors.New("killed")
		}
		return nil
	}
	if err := k.Put(ctx, sk2); err == nil {
		t.Fatal("Put succeeded through the crash")
	}
	f.failSet = nil
	keys, problems, err := k.Load(ctx)
	if err != nil || len(problems) != 0 {
		t.Fatalf("Load after an interrupted rewrite: %v %v", problems, err)
	}
	checkLoaded(t, keys, sk)
	// The next Put finishes the job and removes the old chunks.
	if err := k.Put(ctx, sk2); err != nil {
		t.Fatal(err)
	}
	keys, _, _ = k.Load(ctx)
	checkLoaded(t, keys, sk2)
	for _, a := range before {
		if a != indexAccount && a != sk.Fingerprint && slices.Contains(f.accounts(), a) {
			t.Errorf("stale chunk %s left behind", a)
		}
	}
	if err := k.Delete(ctx, sk.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if accts := f.accounts(); len(accts) != 1 {
		t.Errorf("after Delete the keyring holds %v, want only the index", accts)
	}
}

func TestKeyringChunkMissingOrMismatched(t *testing.T) {
	ctx := context.Background()
	k, f := newFakeKeyring(t)
	k.chunkLen = 512
	a := storedKeyFor(t, genEd25519, "a", Settings{})
	b := storedKeyFor(t, genEd25519, "b", Settings{})
	for _, sk := range []StoredKey{a, b} {
		if err := k.Put(ctx, sk); err != nil {
			t.Fatal(err)
		}
	}
	var chunkA, chunkB string
	for _, acct := range f.accounts() {
		if strings.HasPrefix(acct, a.Fingerprint+"#") && strings.HasSuffix(acct, ".1") {
			chunkA = acct
		}
		if strings.HasPrefix(acct, b.Fingerprint+"#") && strings.HasSuffix(acct, ".2") {
			chunkB = acct
		}
	}
	delete(f.items, chunkA)
	f.items[chunkB] = strings.Repeat("A", len(f.items[chunkB]))
	keys, problems, err := k.Load(ctx)
	if err != nil || len(keys) != 0 {
		t.Fatalf("Load = %v, %v", fingerprints(keys), err)
	}
	msgs := fmt.Sprint(problems)
	for _, want := range []string{
		a.Fingerprint + ": corrupt keyring item: chunk 1 of",
		b.Fingerprint + ": corrupt keyring item: chunks do not match their manifest",
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("problems %s lack %q", msgs, want)
		}
	}
}

func TestKeyringCorruptIndex(t *testing.T) {
	k, f := newFakeKeyring(t)
	f.items[indexAccount] = itemPrefix + "e30=" // {}: no version
	_, _, err := k.Load(context.Background())
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "index of safe-agent keys is damaged") ||
		!strings.Contains(err.Error(), "secret-tool clear service safe-agent username index") {
		t.Errorf("Load with a corrupt index = %v", err)
	}
}

func TestKeyringDeadline(t *testing.T) {
	k, f := newFakeKeyring(t)
	k.timeout = 100 * time.Millisecond
	release := make(chan struct{})
	f.block = release
	start := time.Now()
	_, _, err := k.Load(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "the keyring did not answer within 100ms") ||
		hint.Of(err) != "unlock the login keyring (a desktop prompt may be waiting)" || strings.Contains(err.Error(), "--keystore") {
		t.Errorf("Load on a hung keyring = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Load took %s", d)
	}
	// The abandoned call still holds the keyring: the next call says so.
	err = k.Put(context.Background(), storedKeyFor(t, genEd25519, "x", Settings{}))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "still busy with an earlier request") {
		t.Errorf("Put while a call hangs = %v", err)
	}
	if f.callCount() != 1 {
		t.Errorf("%d backend calls, want 1 (the hung one)", f.callCount())
	}
	// Once it answers, the keyring works again.
	f.mu.Lock()
	f.block = nil
	f.mu.Unlock()
	close(release)
	k.timeout = 2 * time.Second
	if _, _, err := k.Load(context.Background()); err != nil {
		t.Errorf("Load after the hang ended: %v", err)
	}
	// A caller's own cancellation is reported as such.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := k.Load(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context = %v", err)
	}
}

func TestKeyringNoSessionBus(t *testing.T) {
	f := newFakeBackend()
	k := newKeyring("safe-agent", time.Second, nil, f, func() error {
		return sessionBusCheck(func(string) string { return "" }, 1<<30)
	})
	_, _, err := k.Load(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set") {
		t.Errorf("Load without a bus = %v", err)
	}
	if n := f.callCount(); n != 0 {
		t.Errorf("go-keyring was called %d times without a bus address (godbus would run dbus-launch)", n)
	}
	if err := sessionBusCheck(func(string) string { return "unix:path=/x" }, 1<<30); err != nil {
		t.Errorf("with a bus address: %v", err)
	}
	if err := sessionBusCheck(func(string) string { return "autolaunch:" }, 1<<30); err == nil {
		t.Error("autolaunch: accepted (it runs dbus-launch)")
	}
}

func TestKeyringErrorTranslation(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("The name org.freedesktop.secrets was not provided by any .service files"), msgNoSecretService},
		{errors.New("failed to unlock correct collection '/org/freedesktop/secrets/collection/login'"), msgLocked},
		{errors.New(`exec: "dbus-launch": executable file not found in $PATH`), "no D-Bus session bus"},
		{errors.New("dial unix /run/user/1000/bus: connect: no such file or directory"), "cannot reach the D-Bus session bus"},
		{errors.New("something new"), "the keyring failed"},
	}
	for _, tt := range tests {
		err := translate("read index", tt.err)
		if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.err.Error()) {
			t.Errorf("translate(%q) = %q, want ErrUnavailable starting %q and naming the cause", tt.err, err, tt.want)
		}
		if h := hint.Of(err); h == "" || strings.Contains(h, "--keystore") || strings.Contains(err.Error(), "--keystore") {
			t.Errorf("translate(%q): hint %q; want advice beside the message, naming no CLI flag", tt.err, h)
		}
	}
	if err := translate("read x", keyring.ErrNotFound); !errors.Is(err, errNotFound) || errors.Is(err, ErrUnavailable) {
		t.Errorf("translate(ErrNotFound) = %v", err)
	}
}

func TestKeyringPanicInBackend(t *testing.T) {
	k := newKeyring("safe-agent", time.Second, nil, panicBackend{}, func() error { return nil })
	_, _, err := k.Load(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "go-keyring panicked") {
		t.Errorf("Load with a panicking backend = %v", err)
	}
}

type panicBackend struct{}

func (panicBackend) Set(service, account, value string) error    { panic("boom") }
func (panicBackend) Get(service, account string) (string, error) { panic("boom") }
func (panicBackend) Delete(service, account string) error        { panic("boom") }

func TestNoneStore(t *testing.T) {
	s := NewMemory()
	ctx := context.Background()
	sk := storedKeyFor(t, genEd25519, "x", Settings{})
	if err := s.Put(ctx, sk); err != nil {
		t.Fatal(err)
	}
	keys, problems, err := s.Load(ctx)
	if len(keys) != 0 || len(problems) != 0 || err != nil {
		t.Errorf("none store loaded %v %v %v", keys, problems, err)
	}
	if err := s.Delete(ctx, sk.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
	if s.Name() != "none" {
		t.Errorf("Name = %q", s.Name())
	}
}

func TestPutRefusesBadRecords(t *testing.T) {
	k, f := newFakeKeyring(t)
	good := storedKeyFor(t, genEd25519, "x", Settings{})
	tests := []struct {
		name string
		mod  func(*StoredKey)
		want string
	}{
		{"fingerprint", func(s *StoredKey) { s.Fingerprint = "MD5:aa" }, `bad fingerprint "MD5:aa"`},
		{"no-key", func(s *StoredKey) { s.PrivateKeyPEM = nil }, "no private key"},
		{"negative-depth", func(s *StoredKey) { s.Settings.MaxForwardDepth = depth(-1) }, "max forward depth -1 is negative"},
		{"empty-allow", func(s *StoredKey) { s.Settings.Allow = []string{" "} }, "empty destination"},
	}
	for _, tt := range tests {
		sk := good
		tt.mod(&sk)
		if err := k.Put(context.Background(), sk); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Put = %v, want %q", tt.name, err, tt.want)
		}
	}
	if n := f.callCount(); n != 0 {
		t.Errorf("refused records reached the keyring (%d calls)", n)
	}
}

// TestWriteOrder: Put writes the item before the index, Delete removes the
// index entry before the item, so a failure between the two never leaves
// an index entry without its item.
func TestWriteOrder(t *testing.T) {
	ctx := context.Background()
	k, f := newFakeKeyring(t)
	sk := storedKeyFor(t, genEd25519, "x", Settings{})
	died := errors.New("process died")
	f.failSet = func(account string) error {
		if account == sk.Fingerprint {
			return died
		}
		return nil
	}
	if err := k.Put(ctx, sk); !errors.Is(err, died) {
		t.Fatalf("Put = %v", err)
	}
	if keys, problems, err := k.Load(ctx); len(keys) != 0 || len(problems) != 0 || err != nil {
		t.Errorf("after a failed item write Load = %v, %v, %v; want nothing at all", fingerprints(keys), problems, err)
	}

	f.failSet = nil
	if err := k.Put(ctx, sk); err != nil {
		t.Fatal(err)
	}
	f.failDel = func(account string) error {
		if account == sk.Fingerprint {
			return died
		}
		return nil
	}
	if err := k.Delete(ctx, sk.Fingerprint); !errors.Is(err, died) {
		t.Fatalf("Delete = %v", err)
	}
	if keys, problems, err := k.Load(ctx); len(keys) != 0 || len(problems) != 0 || err != nil {
		t.Errorf("after a failed item delete Load = %v, %v, %v; want nothing at all", fingerprints(keys), problems, err)
	}
	f.failDel = nil
	if err := k.Delete(ctx, sk.Fingerprint); err != nil {
		t.Errorf("retrying the remove: %v", err)
	}
	if accts := f.accounts(); len(accts) != 1 {
		t.Errorf("keyring holds %v, want only the index", accts)
	}
}
