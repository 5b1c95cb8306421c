package agent

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/policy"
)

// PrivateKey is how the identity table holds a secret: it can sign and it
// can be destroyed (wiped). The keystore's locked-memory keys implement it;
// plainKey is the in-heap fallback.
type PrivateKey interface {
	ssh.AlgorithmSigner
	Destroy()
}

// Sealer turns a private key as x/crypto's agent delivers it
// (ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey) into a held key.
type Sealer func(priv any) (PrivateKey, error)

// plainKey keeps a private key on the Go heap. It is what the agent uses
// when no keystore vault is configured.
type plainKey struct{ ssh.AlgorithmSigner }

// Destroy is a no-op for heap keys beyond dropping the reference; the
// garbage collector owns the memory.
func (p *plainKey) Destroy() { p.AlgorithmSigner = nil }

// sealPlain is the Sealer for plainKey.
func sealPlain(priv any) (PrivateKey, error) {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot choose a signature algorithm", priv)
	}
	return &plainKey{as}, nil
}

// identity is one loaded key and the constraints it was added with.
type identity struct {
	Public      ssh.PublicKey // may be an *ssh.Certificate
	Blob        string        // Public.Marshal(), the table's key
	Comment     string
	Fingerprint string // of the underlying key (certificates: the certified key)
	Expires     time.Time
	Dest        *sshwire.DestConstraints // ssh-add -h; nil when unrestricted
	Settings    policy.Settings          // the key's own, as added (ssh-add -c/-t, safe-agent add)
	Stored      bool                     // loaded from the keystore
	Added       time.Time
	// CertExpiry: Expires is the certificate's ValidBefore (earlier than
	// any lifetime), so reaching it means the certificate expired.
	CertExpiry bool
	// Upstream is the socket of the upstream agent that holds the key
	// (upstream.go); such an identity has no private key here.
	Upstream string
	key      PrivateKey

	certOnce sync.Once
	certPol  *policy.Cert // Cert() as the policy sees it; nil if none or its CA signature fails
}

// policyCert is the identity's certificate for policy matching, checked
// once (a signature verification per request would cost as much as the
// signature itself).
func (id *identity) policyCert() *policy.Cert {
	id.certOnce.Do(func() {
		if c := id.Cert(); c != nil {
			id.certPol, _ = policy.CertOf(c)
		}
	})
	return id.certPol
}

// Cert is the identity's certificate, or nil for a plain key.
func (id *identity) Cert() *ssh.Certificate {
	c, _ := id.Public.(*ssh.Certificate)
	return c
}

// limitToCert makes a certificate leave the agent at its ValidBefore, to
// the second, when that comes before the lifetime it was added with. A
// certificate that has already expired is refused: it could only fail.
func (id *identity) limitToCert(now time.Time) error {
	c := id.Cert()
	if c == nil || c.ValidBefore == ssh.CertTimeInfinity {
		return nil
	}
	vb := certTime(c.ValidBefore)
	if !now.Before(vb) {
		return hint.Wrap(fmt.Errorf("certificate %q expired at %s", c.KeyId, vb.Local().Format(time.DateTime)), "renew it, then add it again")
	}
	if id.Expires.IsZero() || vb.Before(id.Expires) {
		id.Expires, id.CertExpiry = vb, true
	}
	return nil
}

// notYetValid says, for a certificate whose ValidAfter is still to come,
// when it becomes valid.
func (id *identity) notYetValid(now time.Time) (time.Time, bool) {
	c := id.Cert()
	if c == nil || c.ValidAfter == 0 {
		return time.Time{}, false
	}
	va := certTime(c.ValidAfter)
	return va, now.Before(va)
}

// certTime converts a certificate time (seconds since the epoch, as
// uint64) without overflowing.
func certTime(t uint64) time.Time {
	if t > 1<<62 {
		t = 1 << 62
	}
	return time.Unix(int64(t), 0)
}

// newIdentity is the one constructor of a table entry, for keys added
// over the agent protocol and keys loaded from the keystore alike. pub is
// key's public key or a certificate for it. The settings are checked, and
// the expiry comes from the key's lifetime, else the agent's default, but
// never after a certificate's ValidBefore. key is destroyed on error.
func (s *Server) newIdentity(key PrivateKey, pub ssh.PublicKey, comment string, set policy.Settings, stored bool) (*identity, error) {
	id, err := s.buildIdentity(key, pub, comment, set, stored)
	if err != nil {
		key.Destroy()
		return nil, err
	}
	return id, nil
}

func (s *Server) buildIdentity(key PrivateKey, pub ssh.PublicKey, comment string, set policy.Settings, stored bool) (*identity, error) {
	if err := policy.CheckSettings(set); err != nil {
		return nil, fmt.Errorf("key settings: %w", err)
	}
	if set.Lifetime < 0 {
		return nil, fmt.Errorf("key settings: lifetime %s is negative", set.Lifetime)
	}
	plain := key.PublicKey()
	if c, ok := pub.(*ssh.Certificate); ok && !bytesEqual(c.Key.Marshal(), plain.Marshal()) {
		return nil, errors.New("certificate does not match the private key")
	}
	now := s.now()
	id := &identity{
		Public: pub, Blob: string(pub.Marshal()), Comment: comment, Fingerprint: ssh.FingerprintSHA256(plain),
		Settings: set, Stored: stored, Added: now, key: key,
	}
	lifetime := set.Lifetime
	if lifetime == 0 {
		lifetime = s.opts.DefaultLifetime
	}
	if lifetime > 0 {
		id.Expires = now.Add(lifetime)
	}
	if err := id.limitToCert(now); err != nil {
		return nil, err
	}
	return id, nil
}

// Type is the key's algorithm name, e.g. ssh-ed25519.
func (id *identity) Type() string { return id.Public.Type() }

// errNotFound is returned for a key the agent does not hold.
var errNotFound = errors.New("key not found in agent")

// table is the agent's identity table, shared by all connections. Order
// is insertion order, as OpenSSH lists keys.
type table struct {
	mu     sync.Mutex
	order  []*identity
	byBlob map[string]*identity
	wake   chan struct{} // nudges the expiry reaper after a change
}

func newTable() *table {
	return &table{byBlob: map[string]*identity{}, wake: make(chan struct{}, 1)}
}

// add inserts or replaces an identity. Re-adding a key keeps its place
// and replaces its comment and constraints, as OpenSSH does.
func (t *table) add(id *identity) {
	t.mu.Lock()
	if old, ok := t.byBlob[id.Blob]; ok {
		for i, o := range t.order {
			if o == old {
				t.order[i] = id
			}
		}
		old.key.Destroy()
	} else {
		t.order = append(t.order, id)
	}
	t.byBlob[id.Blob] = id
	t.mu.Unlock()
	t.nudge()
}

func (t *table) nudge() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// get returns a live (unexpired) identity by public key blob.
func (t *table) get(blob []byte, now time.Time) (*identity, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byBlob[string(blob)]
	if !ok || expired(id, now) {
		return nil, false
	}
	return id, true
}

// list returns the live identities in order.
func (t *table) list(now time.Time) []*identity {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*identity, 0, len(t.order))
	for _, id := range t.order {
		if !expired(id, now) {
			out = append(out, id)
		}
	}
	return out
}

// remove deletes one identity; it reports whether the key was there.
func (t *table) remove(blob []byte) (*identity, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byBlob[string(blob)]
	if !ok {
		return nil, false
	}
	t.deleteLocked(id)
	return id, true
}

func (t *table) deleteLocked(id *identity) {
	delete(t.byBlob, id.Blob)
	for i, o := range t.order {
		if o == id {
			t.order = append(t.order[:i], t.order[i+1:]...)
			break
		}
	}
	id.key.Destroy()
}

// removeAll deletes every identity and returns them.
func (t *table) removeAll() []*identity {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.order
	for _, id := range out {
		id.key.Destroy()
	}
	t.order = nil
	t.byBlob = map[string]*identity{}
	return out
}

// reap removes expired identities and returns them with the time of the
// next expiry (zero if none).
func (t *table) reap(now time.Time) (gone []*identity, next time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range append([]*identity(nil), t.order...) {
		if expired(id, now) {
			t.deleteLocked(id)
			gone = append(gone, id)
			continue
		}
		if !id.Expires.IsZero() && (next.IsZero() || id.Expires.Before(next)) {
			next = id.Expires
		}
	}
	return gone, next
}

func expired(id *identity, now time.Time) bool {
	return !id.Expires.IsZero() && !now.Before(id.Expires)
}

// checkKeyType refuses keys the agent does not support: DSA, RSA below
// 2048 bits, ECDSA on other curves.
func checkKeyType(priv any) error {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return hint.Wrap(fmt.Errorf("RSA key of %d bits refused", k.N.BitLen()), "use a key of 2048 bits or more, or an ed25519 key")
		}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return errors.New("ECDSA key on an unsupported curve refused")
		}
	case ed25519.PrivateKey, *ed25519.PrivateKey:
	default:
		return hint.Wrap(fmt.Errorf("key type %T is not supported", priv), "use an ed25519, ecdsa or rsa key")
	}
	return nil
}

// signAlgorithm picks the signature algorithm from the request flags.
// RSA keys sign with SHA-1 ("ssh-rsa") only when no SHA-2 flag is set,
// exactly as OpenSSH's agent does.
func signAlgorithm(pub ssh.PublicKey, flags sshagent.SignatureFlags) string {
	t := pub.Type()
	if c, ok := pub.(*ssh.Certificate); ok {
		t = c.Key.Type()
	}
	if t != ssh.KeyAlgoRSA {
		return t
	}
	switch {
	case flags&sshagent.SignatureFlagRsaSha512 != 0:
		return ssh.KeyAlgoRSASHA512
	case flags&sshagent.SignatureFlagRsaSha256 != 0:
		return ssh.KeyAlgoRSASHA256
	}
	return ssh.KeyAlgoRSA
}

// signWith signs data with an identity's key.
func signWith(id *identity, rand io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	return id.key.SignWithAlgorithm(rand, data, algo)
}
