//go:build unix

package keystore

import (
	"crypto/dsa" //nolint:staticcheck // only to name the type in a refusal
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"golang.org/x/crypto/ssh"
)

// ErrKeyDestroyed is returned when signing with a key after Destroy.
var ErrKeyDestroyed = errors.New("key was removed from the agent")

type keyKind int

const (
	kindEd25519 keyKind = iota + 1
	kindECDSA
	kindRSA
)

// rsaParts is the order of the RSA secrets in a slot.
const (
	rsaD = iota
	rsaP
	rsaQ
	rsaDp
	rsaDq
	rsaQinv
	rsaPartCount
)

// LockedKey is a private key whose secret bytes live only in the vault
// between signatures. It implements ssh.AlgorithmSigner and is safe for
// concurrent use; Destroy waits for signatures in progress.
type LockedKey struct {
	v     *Vault
	kind  keyKind
	pub   ssh.PublicKey
	ecPub *ecdsa.PublicKey // kindECDSA: our own copy
	rsaPb *rsa.PublicKey   // kindRSA: our own copy
	// rsaLen are the byte lengths of the RSA secrets, in rsaParts order
	// (lengths only; the values are in the slot).
	rsaLen [rsaPartCount]int

	mu sync.RWMutex
	s  *slot // nil once destroyed
}

var _ ssh.AlgorithmSigner = (*LockedKey)(nil)

// Seal copies a private key's secret bytes into locked memory and returns a
// LockedKey that signs with them. It accepts the types
// golang.org/x/crypto/ssh/agent.AddedKey and ssh.ParseRawPrivateKey give:
// ed25519.PrivateKey, *ed25519.PrivateKey, *ecdsa.PrivateKey (P-256, P-384,
// P-521) and *rsa.PrivateKey (two primes, at least MinRSABits).
//
// Seal takes ownership of priv: after a successful seal it overwrites the
// caller's secret bytes with zeros (the ed25519 slice; the words of the
// big.Ints D, Primes, Dp, Dq, Qinv and CRTValues, to their capacity), so the
// key must not be used again. What it cannot wipe: copies the caller's
// big.Ints left behind when they grew or were computed (math/big reallocates
// freely), the internal key crypto/rsa and crypto/ecdsa derived from priv
// (unexported, dropped here and left to the garbage collector), and whatever
// the parser that produced priv allocated. On error priv is left untouched.
//
// Before returning, Seal signs a test message and verifies it with the
// public key, so a key whose halves do not match is refused here and not at
// the first login.
func (v *Vault) Seal(priv any) (k *LockedKey, err error) {
	WithSecretErasure(func() { k, err = v.seal(priv) })
	return k, err
}

func (v *Vault) seal(priv any) (*LockedKey, error) {
	var (
		k    *LockedKey
		err  error
		wipe func()
	)
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		k, err = v.sealEd25519(p)
		wipe = func() { clear(p) }
	case *ed25519.PrivateKey:
		if p == nil {
			return nil, errors.New("seal key: nil ed25519 key")
		}
		k, err = v.sealEd25519(*p)
		wipe = func() { clear(*p) }
	case *ecdsa.PrivateKey:
		k, err = v.sealECDSA(p)
		wipe = func() { wipeInt(p.D) }
	case *rsa.PrivateKey:
		k, err = v.sealRSA(p)
		wipe = func() { wipeRSA(p) }
	case *dsa.PrivateKey:
		return nil, errors.New(msgDSA)
	default:
		return nil, fmt.Errorf("unsupported private key type %T: safe-agent holds ed25519, ECDSA (P-256, P-384, P-521) and RSA keys", priv)
	}
	if err != nil {
		return nil, err
	}
	if err := k.selfTest(); err != nil {
		k.Destroy()
		return nil, err
	}
	wipe()
	return k, nil
}

func (v *Vault) sealEd25519(p ed25519.PrivateKey) (*LockedKey, error) {
	if len(p) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("seal key: ed25519 private key has %d bytes, want %d", len(p), ed25519.PrivateKeySize)
	}
	pub, err := ssh.NewPublicKey(ed25519.PublicKey(append([]byte(nil), p[32:]...)))
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	s, err := v.alloc(ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	copy(s.b, p)
	return v.register(&LockedKey{v: v, kind: kindEd25519, pub: pub, s: s})
}

func (v *Vault) sealECDSA(p *ecdsa.PrivateKey) (*LockedKey, error) {
	if p.D == nil || p.Curve == nil || p.X == nil || p.Y == nil {
		return nil, errors.New("seal key: incomplete ECDSA key")
	}
	switch p.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
	default:
		return nil, fmt.Errorf("ECDSA curve %s is not supported by SSH: use P-256, P-384 or P-521, or an ed25519 key", p.Curve.Params().Name)
	}
	size := (p.Curve.Params().N.BitLen() + 7) / 8
	if p.D.Sign() <= 0 || p.D.BitLen() > size*8 {
		return nil, errors.New("seal key: ECDSA private scalar out of range")
	}
	ecPub := &ecdsa.PublicKey{Curve: p.Curve, X: new(big.Int).Set(p.X), Y: new(big.Int).Set(p.Y)}
	pub, err := ssh.NewPublicKey(ecPub)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	s, err := v.alloc(size)
	if err != nil {
		return nil, err
	}
	p.D.FillBytes(s.b)
	return v.register(&LockedKey{v: v, kind: kindECDSA, pub: pub, ecPub: ecPub, s: s})
}

func (v *Vault) sealRSA(p *rsa.PrivateKey) (*LockedKey, error) {
	if p.N == nil || p.D == nil {
		return nil, errors.New("seal key: incomplete RSA key")
	}
	if bits := p.N.BitLen(); bits < MinRSABits {
		return nil, fmt.Errorf("RSA keys shorter than %d bits are refused (this one has %d): create an ed25519 key with `ssh-keygen -t ed25519`", MinRSABits, bits)
	}
	if len(p.Primes) != 2 || p.Primes[0] == nil || p.Primes[1] == nil {
		return nil, fmt.Errorf("RSA keys with %d primes are not supported: use a standard two-prime key", len(p.Primes))
	}
	if p.Precomputed.Dp == nil || p.Precomputed.Dq == nil || p.Precomputed.Qinv == nil {
		// Keys from ssh-agent's wire format carry Qinv but not Dp, Dq.
		p.Precompute()
		if p.Precomputed.Dp == nil || p.Precomputed.Dq == nil || p.Precomputed.Qinv == nil {
			if err := p.Validate(); err != nil {
				return nil, fmt.Errorf("seal key: invalid RSA key: %w", err)
			}
			return nil, errors.New("seal key: invalid RSA key")
		}
	}
	parts := [rsaPartCount]*big.Int{p.D, p.Primes[0], p.Primes[1], p.Precomputed.Dp, p.Precomputed.Dq, p.Precomputed.Qinv}
	var lens [rsaPartCount]int
	total := 0
	for i, x := range parts {
		if x.Sign() <= 0 {
			return nil, errors.New("seal key: invalid RSA key (non-positive private value)")
		}
		lens[i] = (x.BitLen() + 7) / 8
		total += lens[i]
	}
	rsaPb := &rsa.PublicKey{N: new(big.Int).Set(p.N), E: p.E}
	pub, err := ssh.NewPublicKey(rsaPb)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	s, err := v.alloc(total)
	if err != nil {
		return nil, err
	}
	off := 0
	for i, x := range parts {
		x.FillBytes(s.b[off : off+lens[i]])
		off += lens[i]
	}
	return v.register(&LockedKey{v: v, kind: kindRSA, pub: pub, rsaPb: rsaPb, rsaLen: lens, s: s})
}

// register records k so that Close can destroy it.
func (v *Vault) register(k *LockedKey) (*LockedKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		v.free(k.s)
		return nil, ErrVaultClosed
	}
	v.keys[k] = struct{}{}
	return k, nil
}

func (k *LockedKey) selfTest() error {
	msg := make([]byte, 32)
	if _, err := rand.Read(msg); err != nil {
		return fmt.Errorf("seal key: %w", err)
	}
	sig, err := k.SignWithAlgorithm(rand.Reader, msg, "")
	if err != nil {
		return fmt.Errorf("seal key: test signature: %w", err)
	}
	if err := k.pub.Verify(msg, sig); err != nil {
		return errors.New("seal key: the private key does not match its public key")
	}
	return nil
}

// PublicKey returns the key's public half.
func (k *LockedKey) PublicKey() ssh.PublicKey { return k.pub }

// Sign signs data with the key type's default algorithm (as ssh.Signer).
func (k *LockedKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return k.SignWithAlgorithm(rand, data, "")
}

// SignWithAlgorithm signs data (as ssh.AlgorithmSigner; algorithm "" means
// the key type's default, e.g. ssh.KeyAlgoRSA for RSA). The secret is copied
// out of the vault only for this call: see signEd25519, signECDSA and
// signRSA for which copies that makes and which of them are wiped.
func (k *LockedKey) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (sig *ssh.Signature, err error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.s == nil {
		return nil, ErrKeyDestroyed
	}
	WithSecretErasure(func() {
		switch k.kind {
		case kindEd25519:
			sig, err = k.signEd25519(rand, data, algorithm)
		case kindECDSA:
			sig, err = k.signECDSA(rand, data, algorithm)
		case kindRSA:
			sig, err = k.signRSA(rand, data, algorithm)
		}
	})
	return sig, err
}

// signEd25519 signs from the seed where the vault keeps it, without a
// copy on the heap (signEd25519Seed says why not crypto/ed25519).
func (k *LockedKey) signEd25519(_ io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	if algorithm != "" && algorithm != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("ssh: unsupported signature algorithm %q for key format %q", algorithm, ssh.KeyAlgoED25519)
	}
	seed, pub := k.s.b[:ed25519.SeedSize], k.s.b[ed25519.SeedSize:]
	return &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: signEd25519Seed(seed, pub, data)}, nil
}

// signECDSA rebuilds D from the vault (big.Int.SetBytes reads the locked
// bytes directly) and clears D's words after. Left behind: the fixed-size
// scalar crypto/ecdsa copies D into and the internal key it caches for this
// *PrivateKey, dropped with it.
func (k *LockedKey) signECDSA(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	// The deprecated D field is used on purpose: ecdsa.ParseRawPrivateKey
	// would recompute the public point on every signature.
	priv := &ecdsa.PrivateKey{PublicKey: *k.ecPub, D: new(big.Int).SetBytes(k.s.b)}
	defer wipeInt(priv.D)
	return signWith(priv, rand, data, algorithm)
}

// signRSA rebuilds D, P, Q, Dp, Dq and Qinv from the vault and clears all
// their words after. Left behind: the byte copies crypto/rsa makes of them
// and the internal (crypto/internal/fips140/rsa) key it builds from them,
// unexported and dropped with priv, and the temporaries of the modular
// exponentiation.
func (k *LockedKey) signRSA(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	var parts [rsaPartCount]*big.Int
	off := 0
	for i, n := range k.rsaLen {
		parts[i] = new(big.Int).SetBytes(k.s.b[off : off+n])
		off += n
	}
	priv := &rsa.PrivateKey{
		PublicKey: *k.rsaPb,
		D:         parts[rsaD],
		Primes:    []*big.Int{parts[rsaP], parts[rsaQ]},
		Precomputed: rsa.PrecomputedValues{
			Dp: parts[rsaDp], Dq: parts[rsaDq], Qinv: parts[rsaQinv],
		},
	}
	defer wipeRSA(priv)
	priv.Precompute()
	return signWith(priv, rand, data, algorithm)
}

func signWith(priv any, rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	as, ok := signer.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("ssh signer %T cannot choose algorithms", signer)
	}
	return as.SignWithAlgorithm(rand, data, algorithm)
}

// Destroy wipes the key's secret bytes and frees its slot; signing
// afterwards returns ErrKeyDestroyed. It waits for signatures in progress
// and is idempotent.
func (k *LockedKey) Destroy() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.s == nil {
		return
	}
	k.v.mu.Lock()
	defer k.v.mu.Unlock()
	k.v.free(k.s)
	k.s = nil
	delete(k.v.keys, k)
}

// SealStored parses a stored key's PEM, checks that it is the key its
// Fingerprint names, and seals it. k.PrivateKeyPEM is wiped whatever the
// outcome. What x/crypto's parser leaves behind (its PEM decoding buffer,
// big.Int temporaries) is unreachable afterwards but not wiped unless the
// binary is built with GOEXPERIMENT=runtimesecret.
func (v *Vault) SealStored(k *StoredKey) (lk *LockedKey, err error) {
	defer clear(k.PrivateKeyPEM)
	WithSecretErasure(func() {
		priv, perr := ssh.ParseRawPrivateKey(k.PrivateKeyPEM)
		if perr != nil {
			err = fmt.Errorf("stored key %s does not parse (%v): remove it with `safe-agent remove %s` and add the key again", k.Fingerprint, perr, k.Fingerprint)
			return
		}
		if err = checkKeyType(priv); err != nil {
			wipeKey(priv)
			err = fmt.Errorf("stored key %s: %w", k.Fingerprint, err)
			return
		}
		lk, err = v.seal(priv)
		if err != nil {
			wipeKey(priv)
			err = fmt.Errorf("stored key %s: %w", k.Fingerprint, err)
			return
		}
		if fp := ssh.FingerprintSHA256(lk.PublicKey()); fp != k.Fingerprint {
			lk.Destroy()
			lk, err = nil, fmt.Errorf("stored key %s holds a different key (%s): remove it with `safe-agent remove %s` and add the key again", k.Fingerprint, fp, k.Fingerprint)
		}
	})
	return lk, err
}
