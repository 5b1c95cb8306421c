package keystore

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // only to refuse it
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ErrWrongPassphrase is wrapped by ParsePrivateKeyFile's error for a wrong
// passphrase, so a caller can ask again.
var ErrWrongPassphrase = errors.New("wrong passphrase")

// MinRSABits is the smallest RSA modulus Seal and ParsePrivateKeyFile accept.
const MinRSABits = 2048

const openSSHMagic = "openssh-key-v1\x00"

const msgDSA = "DSA keys are not supported (OpenSSH dropped them): create an ed25519 key with `ssh-keygen -t ed25519`"

// oidDSA is how crypto/x509 names DSA in a PKCS#8 it cannot parse.
const oidDSA = "1.2.840.10040.4.1"

// openSSHContainer is the outer, unencrypted part of an "OPENSSH PRIVATE
// KEY" (PROTOCOL.key in OpenSSH).
type openSSHContainer struct {
	CipherName   string
	KdfName      string
	KdfOpts      string
	NumKeys      uint32
	PubKey       []byte
	PrivKeyBlock []byte
	Rest         []byte `ssh:"rest"`
}

// openSSHPrivate is the start of the (decrypted) private section. The
// type-specific structs below read only up to the comment; their secret
// fields are []byte so ssh.Unmarshal leaves them as views into our buffer
// (no copies) instead of allocating big.Ints.
type openSSHPrivate struct {
	Check1  uint32
	Check2  uint32
	Keytype string
	Rest    []byte `ssh:"rest"`
}

type openSSHEd25519 struct {
	Pub, Priv []byte
	Comment   string
	Pad       []byte `ssh:"rest"`
}

type openSSHRSA struct {
	N, E, D, Iqmp, P, Q []byte
	Comment             string
	Pad                 []byte `ssh:"rest"`
}

type openSSHECDSA struct {
	Curve   string
	Pub, D  []byte
	Comment string
	Pad     []byte `ssh:"rest"`
}

// ParsePrivateKeyFile reads a private key file's contents (name is only for
// messages) in OpenSSH, PEM (PKCS#1 RSA, SEC1 EC, legacy encrypted PEM) or
// PKCS#8 format. For a passphrase-protected file it calls passphrase (which
// may be nil when there is no way to ask) and wipes what it returns.
//
// The comment is the one stored in an unencrypted OpenSSH file; it is ""
// for other formats and for encrypted OpenSSH files (x/crypto does not
// expose it after decryption): callers fall back to KEYFILE.pub's comment or
// the file name, as ssh-add does.
//
// Refused with a message that says why: DSA, RSA shorter than MinRSABits,
// ECDSA curves SSH cannot use, FIDO (sk-) keys, encrypted PKCS#8.
//
// Copies: x/crypto decodes the PEM into its own buffer (and, for OpenSSH
// files, decrypts in place there) and never wipes it; this function wipes
// its own decoding and the passphrase. priv is the caller's to Seal (which
// wipes it).
func ParsePrivateKeyFile(name string, data []byte, passphrase func() ([]byte, error)) (priv any, comment string, err error) {
	WithSecretErasure(func() { priv, comment, err = parsePrivateKeyFile(name, data, passphrase) })
	return priv, comment, err
}

func parsePrivateKeyFile(name string, data []byte, passphrase func() ([]byte, error)) (any, string, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", noPEMError(name, data)
	}
	defer clear(block.Bytes)
	comment := ""
	switch block.Type {
	case "OPENSSH PRIVATE KEY":
		c, err := inspectOpenSSH(name, block.Bytes)
		if err != nil {
			return nil, "", err
		}
		comment = c
	case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
	case "DSA PRIVATE KEY":
		return nil, "", fmt.Errorf("%s: %s", name, msgDSA)
	case "ENCRYPTED PRIVATE KEY":
		return nil, "", fmt.Errorf("%s: encrypted PKCS#8 keys (BEGIN ENCRYPTED PRIVATE KEY) are not supported: decrypt it with `openssl pkey -in %s -out %s.plain`, add %s.plain, then delete it (the keyring keeps the key)", name, name, name, name)
	default:
		return nil, "", fmt.Errorf("%s holds a %q PEM block, not a private key in OpenSSH, PEM or PKCS#8 format", name, block.Type)
	}

	priv, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		priv, err = parseWithPassphrase(name, data, passphrase)
		if err != nil {
			return nil, "", err
		}
	} else if err != nil {
		if strings.Contains(err.Error(), oidDSA) {
			return nil, "", fmt.Errorf("%s: %s", name, msgDSA)
		}
		return nil, "", fmt.Errorf("%s is damaged or not a supported private key: %w", name, err)
	}
	if err := checkKeyType(priv); err != nil {
		wipeKey(priv)
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	return priv, comment, nil
}

func parseWithPassphrase(name string, data []byte, passphrase func() ([]byte, error)) (any, error) {
	if passphrase == nil {
		return nil, fmt.Errorf("%s is passphrase-protected and there is no terminal or SSH_ASKPASS to ask for it", name)
	}
	pass, err := passphrase()
	if err != nil {
		return nil, fmt.Errorf("read passphrase for %s: %w", name, err)
	}
	defer clear(pass)
	priv, err := ssh.ParseRawPrivateKeyWithPassphrase(data, pass)
	switch {
	case err == nil:
		return priv, nil
	case len(pass) == 0:
		return nil, fmt.Errorf("%w for %s (it was empty)", ErrWrongPassphrase, name)
	case errors.Is(err, x509.IncorrectPasswordError):
		return nil, fmt.Errorf("%w for %s", ErrWrongPassphrase, name)
	case strings.Contains(err.Error(), "asn1:"):
		// Legacy PEM encryption has no integrity check: a wrong passphrase
		// often shows up as garbage DER.
		return nil, fmt.Errorf("%w for %s (or the file is damaged)", ErrWrongPassphrase, name)
	default:
		return nil, fmt.Errorf("%s is damaged or not a supported private key: %w", name, err)
	}
}

// noPEMError explains data without a complete PEM block.
func noPEMError(name string, data []byte) error {
	if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
		return fmt.Errorf("%s is a public key: give the private key file (usually the same name without .pub)", name)
	}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return fmt.Errorf("%s is truncated or damaged: its PEM block has no END line or broken base64", name)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%s is empty", name)
	}
	return fmt.Errorf("%s does not contain a private key in OpenSSH, PEM or PKCS#8 format", name)
}

// inspectOpenSSH refuses unsupported OpenSSH keys before any passphrase is
// asked (the public key is outside the encryption) and returns the comment
// of an unencrypted key.
func inspectOpenSSH(name string, der []byte) (string, error) {
	if !bytes.HasPrefix(der, []byte(openSSHMagic)) {
		return "", fmt.Errorf("%s is damaged: not an openssh-key-v1 file", name)
	}
	var w openSSHContainer
	if err := ssh.Unmarshal(der[len(openSSHMagic):], &w); err != nil {
		return "", fmt.Errorf("%s is truncated or damaged: %w", name, err)
	}
	if w.NumKeys != 1 {
		return "", fmt.Errorf("%s holds %d keys; safe-agent reads files with one key, as OpenSSH does", name, w.NumKeys)
	}
	pub, err := ssh.ParsePublicKey(w.PubKey)
	if err != nil {
		if strings.Contains(err.Error(), "ssh-dss") || bytes.Contains(w.PubKey, []byte("ssh-dss")) {
			return "", fmt.Errorf("%s: %s", name, msgDSA)
		}
		return "", fmt.Errorf("%s is damaged: its public key: %w", name, err)
	}
	switch t := pub.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
	case ssh.KeyAlgoRSA:
		if cp, ok := pub.(ssh.CryptoPublicKey); ok {
			if rp, ok := cp.CryptoPublicKey().(*rsa.PublicKey); ok && rp.N.BitLen() < MinRSABits {
				return "", fmt.Errorf("%s: %w", name, shortRSAError(rp.N.BitLen()))
			}
		}
	case ssh.KeyAlgoDSA:
		return "", fmt.Errorf("%s: %s", name, msgDSA)
	case ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return "", fmt.Errorf("%s is a FIDO security key handle (%s): safe-agent cannot use security keys; keep using it with ssh-agent or directly with ssh -i", name, t)
	default:
		return "", fmt.Errorf("%s: key type %s is not supported: safe-agent holds ed25519, ECDSA and RSA keys", name, t)
	}
	if w.CipherName != "none" {
		return "", nil
	}
	var p openSSHPrivate
	if err := ssh.Unmarshal(w.PrivKeyBlock, &p); err != nil || p.Check1 != p.Check2 {
		return "", fmt.Errorf("%s is damaged: its private section does not parse", name)
	}
	var rec any
	switch p.Keytype {
	case ssh.KeyAlgoED25519:
		rec = &openSSHEd25519{}
	case ssh.KeyAlgoRSA:
		rec = &openSSHRSA{}
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		rec = &openSSHECDSA{}
	default:
		return "", nil // let x/crypto report it
	}
	if err := ssh.Unmarshal(p.Rest, rec); err != nil {
		return "", fmt.Errorf("%s is truncated or damaged: %w", name, err)
	}
	switch r := rec.(type) {
	case *openSSHEd25519:
		return r.Comment, nil
	case *openSSHRSA:
		return r.Comment, nil
	case *openSSHECDSA:
		return r.Comment, nil
	}
	return "", nil
}

func shortRSAError(bits int) error {
	return fmt.Errorf("RSA keys shorter than %d bits are refused (this one has %d): create an ed25519 key with `ssh-keygen -t ed25519`", MinRSABits, bits)
}

// checkKeyType accepts the keys Seal can hold.
func checkKeyType(priv any) error {
	switch k := priv.(type) {
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not supported by SSH: use P-256, P-384 or P-521, or an ed25519 key", k.Curve.Params().Name)
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return shortRSAError(bits)
		}
		if len(k.Primes) != 2 {
			return fmt.Errorf("RSA keys with %d primes are not supported: use a standard two-prime key", len(k.Primes))
		}
		return nil
	case *dsa.PrivateKey:
		return errors.New(msgDSA)
	default:
		return fmt.Errorf("unsupported private key type %T: safe-agent holds ed25519, ECDSA and RSA keys", priv)
	}
}

// wipeKey zeroes what it can of a parsed key that will not be sealed.
func wipeKey(priv any) {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		clear(k)
	case *ed25519.PrivateKey:
		clear(*k)
	case *ecdsa.PrivateKey:
		wipeInt(k.D)
	case *rsa.PrivateKey:
		wipeRSA(k)
	case *dsa.PrivateKey:
		wipeInt(k.X)
	}
}

// wipeInt zeroes x's words up to their capacity and sets x to 0.
func wipeInt(x *big.Int) {
	if x == nil {
		return
	}
	w := x.Bits()
	clear(w[:cap(w)])
	x.SetInt64(0)
}

// normalizeKey turns *ed25519.PrivateKey into ed25519.PrivateKey, the form
// x/crypto's marshalling and signer constructors expect.
func normalizeKey(priv any) any {
	if p, ok := priv.(*ed25519.PrivateKey); ok && p != nil {
		return *p
	}
	return priv
}

// MarshalPrivateKey encodes priv as an unencrypted OpenSSH PEM for storage.
// The caller wipes the result; the unencoded bytes are wiped here (x/crypto's
// own intermediate buffers are not reachable).
func MarshalPrivateKey(priv any, comment string) (out []byte, err error) {
	WithSecretErasure(func() {
		if err = checkKeyType(priv); err != nil {
			return
		}
		var block *pem.Block
		block, err = ssh.MarshalPrivateKey(normalizeKey(priv), comment)
		if err != nil {
			err = fmt.Errorf("encode private key: %w", err)
			return
		}
		out = pem.EncodeToMemory(block)
		clear(block.Bytes)
	})
	return out, err
}

// wipeRSA zeroes an RSA key's private values and drops its precomputed
// internal key (unexported: left to the garbage collector).
func wipeRSA(p *rsa.PrivateKey) {
	wipeInt(p.D)
	for _, q := range p.Primes {
		wipeInt(q)
	}
	wipeInt(p.Precomputed.Dp)
	wipeInt(p.Precomputed.Dq)
	wipeInt(p.Precomputed.Qinv)
	for _, v := range p.Precomputed.CRTValues {
		wipeInt(v.Exp)
		wipeInt(v.Coeff)
		wipeInt(v.R)
	}
	p.Precomputed = rsa.PrecomputedValues{}
}
