package keystore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// Ed25519 is deterministic: the vault's signer must give exactly the
// standard library's signature for every key and message.
func TestSignEd25519SeedMatchesStdlib(t *testing.T) {
	for i := range 2000 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, i%700)
		rand.Read(msg)
		want := ed25519.Sign(priv, msg)
		got := signEd25519Seed(priv.Seed(), pub, msg)
		if !bytes.Equal(got, want) {
			t.Fatalf("key %d, %d-byte message: signature differs from crypto/ed25519", i, len(msg))
		}
		if !ed25519.Verify(pub, msg, got) {
			t.Fatalf("key %d: signature does not verify", i)
		}
	}
}

func FuzzSignEd25519Seed(f *testing.F) {
	f.Add(make([]byte, 32), []byte("SSHSIG"))
	f.Add(bytes.Repeat([]byte{0xff}, 32), []byte{})
	f.Fuzz(func(t *testing.T, seed, msg []byte) {
		if len(seed) != ed25519.SeedSize {
			return
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if got, want := signEd25519Seed(seed, pub, msg), ed25519.Sign(priv, msg); !bytes.Equal(got, want) {
			t.Fatalf("signature differs from crypto/ed25519")
		}
	})
}
