//go:build unix

package keystore

import (
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"
)

// What the Vault costs per signature against a plain heap key (64 bytes
// of data, like a login's session hash): go test -bench Sign ./keystore/

func benchLocked(b *testing.B, gen func(testing.TB) any) {
	v := newTestVault(b)
	k, err := v.Seal(gen(b))
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.SignWithAlgorithm(rand.Reader, data, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPlain signs the way a plain x/crypto agent keyring does: a signer
// built once over a key on the heap.
func benchPlain(b *testing.B, gen func(testing.TB) any) {
	s, err := ssh.NewSignerFromKey(normalizeKey(gen(b)))
	if err != nil {
		b.Fatal(err)
	}
	as := s.(ssh.AlgorithmSigner)
	data := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := as.SignWithAlgorithm(rand.Reader, data, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignEd25519Locked(b *testing.B)   { benchLocked(b, genEd25519) }
func BenchmarkSignEd25519Plain(b *testing.B)    { benchPlain(b, genEd25519) }
func BenchmarkSignECDSAP256Locked(b *testing.B) { benchLocked(b, genECDSA(elliptic.P256())) }
func BenchmarkSignECDSAP256Plain(b *testing.B)  { benchPlain(b, genECDSA(elliptic.P256())) }
func BenchmarkSignRSA3072Locked(b *testing.B)   { benchLocked(b, genRSA(3072)) }
func BenchmarkSignRSA3072Plain(b *testing.B)    { benchPlain(b, genRSA(3072)) }
