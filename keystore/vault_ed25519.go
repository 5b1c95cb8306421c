package keystore

import (
	"crypto/ed25519"
	"crypto/sha512"

	"filippo.io/edwards25519"
)

// signEd25519Seed is RFC 8032 Ed25519 signing (section 5.1.6) from the
// 32-byte seed, read where the vault keeps it, and the known public key.
//
// Why not crypto/ed25519: given a private key in a fresh slice it derives
// the public key again (a second scalar multiplication, a third of the
// signing time) and caches the expanded key (scalar and prefix) on the
// heap through a weak pointer to that slice; the vault cannot hand it a
// stable slice (a weak pointer into the vault's mapping kills the
// process). Here the expanded key exists only in this call's buffers,
// which are cleared; the result is byte for byte crypto/ed25519's
// (TestSignEd25519SeedMatchesStdlib).
func signEd25519Seed(seed, pub, msg []byte) []byte {
	h := sha512.Sum512(seed)
	defer clear(h[:])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("ed25519: " + err.Error()) // 32 bytes by construction
	}
	defer s.Set(edwards25519.NewScalar())

	// r = SHA-512(prefix || M): the prefix is secret, so hash a buffer of
	// ours that is cleared, not a hash state that keeps a copy.
	buf := make([]byte, 32+len(msg))
	copy(buf, h[32:])
	copy(buf[32:], msg)
	rd := sha512.Sum512(buf)
	clear(buf)
	defer clear(rd[:])
	r, err := edwards25519.NewScalar().SetUniformBytes(rd[:])
	if err != nil {
		panic("ed25519: " + err.Error())
	}
	defer r.Set(edwards25519.NewScalar())
	R := new(edwards25519.Point).ScalarBaseMult(r)

	// k = SHA-512(R || A || M), all public.
	kh := sha512.New()
	kh.Write(R.Bytes())
	kh.Write(pub)
	kh.Write(msg)
	var kd [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(kd[:0]))
	if err != nil {
		panic("ed25519: " + err.Error())
	}
	S := edwards25519.NewScalar().MultiplyAdd(k, s, r)

	sig := make([]byte, ed25519.SignatureSize)
	copy(sig[:32], R.Bytes())
	copy(sig[32:], S.Bytes())
	return sig
}
