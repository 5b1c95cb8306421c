//go:build unix

package keystore

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // to test its refusal
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// slotForTest is a view of the key's slot in the vault; it stays readable
// after Destroy as long as its chunk is mapped.
func (k *LockedKey) slotForTest() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.s.b
}

func newTestVault(t testing.TB) *Vault {
	t.Helper()
	v, err := NewVault(nil, VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// publicOf copies the public half before Seal wipes the private one.
func publicOf(t testing.TB, priv any) ssh.PublicKey {
	t.Helper()
	var pub any
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		pub = ed25519.PublicKey(bytes.Clone(k[32:]))
	case *ed25519.PrivateKey:
		pub = ed25519.PublicKey(bytes.Clone((*k)[32:]))
	case *ecdsa.PrivateKey:
		pub = &ecdsa.PublicKey{Curve: k.Curve, X: new(big.Int).Set(k.X), Y: new(big.Int).Set(k.Y)}
	case *rsa.PrivateKey:
		pub = &rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}
	}
	p, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// secretWiped reports whether the caller's copy of the key is all zero.
func secretWiped(priv any) bool {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		return allZero(k)
	case *ed25519.PrivateKey:
		return allZero(*k)
	case *ecdsa.PrivateKey:
		return k.D.Sign() == 0
	case *rsa.PrivateKey:
		return k.D.Sign() == 0 && k.Primes[0].Sign() == 0 && k.Primes[1].Sign() == 0 && k.Precomputed.Dp == nil
	}
	return false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestSealSignVerify(t *testing.T) {
	v := newTestVault(t)
	for _, tk := range allKeyTypes {
		t.Run(tk.name, func(t *testing.T) {
			priv := tk.gen(t)
			want := publicOf(t, priv)
			k, err := v.Seal(priv)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			defer k.Destroy()
			if !bytes.Equal(k.PublicKey().Marshal(), want.Marshal()) {
				t.Fatalf("PublicKey() = %s, want %s", ssh.FingerprintSHA256(k.PublicKey()), ssh.FingerprintSHA256(want))
			}
			if !secretWiped(priv) {
				t.Errorf("Seal left the caller's private key intact")
			}
			if allZero(k.slotForTest()) {
				t.Fatalf("slot is empty after Seal")
			}
			algs := []string{""}
			if want.Type() == ssh.KeyAlgoRSA {
				algs = []string{"", ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512}
			}
			for _, alg := range algs {
				data := []byte("data to sign " + alg)
				sig, err := k.SignWithAlgorithm(rand.Reader, data, alg)
				if err != nil {
					t.Fatalf("SignWithAlgorithm(%q): %v", alg, err)
				}
				if alg != "" && sig.Format != alg {
					t.Errorf("signature format %q, want %q", sig.Format, alg)
				}
				if err := want.Verify(data, sig); err != nil {
					t.Errorf("signature (%q) does not verify with the original public key: %v", alg, err)
				}
				if err := want.Verify([]byte("other data"), sig); err == nil {
					t.Errorf("signature (%q) verifies for other data", alg)
				}
			}
			sig, err := k.Sign(rand.Reader, []byte("x"))
			if err != nil || want.Verify([]byte("x"), sig) != nil {
				t.Errorf("Sign: %v", err)
			}
			other := ssh.KeyAlgoRSASHA256
			if want.Type() == ssh.KeyAlgoRSA {
				other = ssh.KeyAlgoED25519
			}
			if _, err := k.SignWithAlgorithm(rand.Reader, []byte("x"), other); err == nil {
				t.Errorf("SignWithAlgorithm(%q) with a %s key succeeded", other, want.Type())
			}
		})
	}
}

func TestDestroyWipesSlot(t *testing.T) {
	v := newTestVault(t)
	for _, tk := range allKeyTypes {
		t.Run(tk.name, func(t *testing.T) {
			k, err := v.Seal(tk.gen(t))
			if err != nil {
				t.Fatal(err)
			}
			slot := k.slotForTest()
			if allZero(slot) {
				t.Fatal("slot empty before Destroy")
			}
			k.Destroy()
			if !allZero(slot) {
				t.Errorf("slot not wiped by Destroy (%d of %d bytes non-zero)", len(slot)-bytes.Count(slot, []byte{0}), len(slot))
			}
			if _, err := k.Sign(rand.Reader, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
				t.Errorf("Sign after Destroy: %v, want ErrKeyDestroyed", err)
			}
			k.Destroy() // idempotent
		})
	}
}

func TestManyKeysFit(t *testing.T) {
	v := newTestVault(t)
	var keys []*LockedKey
	for range 100 {
		k, err := v.Seal(genEd25519(t))
		if err != nil {
			t.Fatalf("Seal key %d: %v", len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	st := v.Stats()
	if st.Keys != 100 || st.Chunks != 1 || st.UsedBytes != 100*blockSize {
		t.Errorf("Stats = %+v, want 100 keys in 1 chunk using %d bytes", st, 100*blockSize)
	}
	seen := map[string]bool{}
	for i, k := range keys {
		sig, err := k.Sign(rand.Reader, []byte("m"))
		if err != nil || k.PublicKey().Verify([]byte("m"), sig) != nil {
			t.Fatalf("key %d: sign/verify failed: %v", i, err)
		}
		seen[string(k.slotForTest())] = true
	}
	if len(seen) != 100 {
		t.Errorf("%d distinct slots for 100 keys: slots overlap", len(seen))
	}
}

func TestVaultGrowsAndShrinks(t *testing.T) {
	v, err := newVault(nil, VaultOptions{}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var keys []*LockedKey
	for range 5 {
		k, err := v.Seal(genRSA(4096)(t))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	// RSA-4096: D 512 + P, Q, Dp, Dq, Qinv 256 each = 1792 bytes = 28
	// blocks; two fit a 4 KiB chunk.
	if st := v.Stats(); st.Chunks != 3 || st.UsedBytes != 5*28*blockSize {
		t.Errorf("Stats = %+v, want 3 chunks, %d bytes used", st, 5*28*blockSize)
	}
	for _, k := range keys[1:] {
		k.Destroy()
	}
	if st := v.Stats(); st.Chunks != 1 || st.Keys != 1 {
		t.Errorf("after destroying 4 keys Stats = %+v, want 1 chunk, 1 key", st)
	}
	sig, err := keys[0].Sign(rand.Reader, []byte("m"))
	if err != nil || keys[0].PublicKey().Verify([]byte("m"), sig) != nil {
		t.Errorf("remaining key no longer signs: %v", err)
	}
}

func TestCloseDestroysKeys(t *testing.T) {
	v, err := NewVault(nil, VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := v.Seal(genEd25519(t))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close()
	if _, err := k.Sign(rand.Reader, []byte("x")); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Sign after Close: %v, want ErrKeyDestroyed", err)
	}
	if _, err := v.Seal(genEd25519(t)); !errors.Is(err, ErrVaultClosed) {
		t.Errorf("Seal after Close: %v, want ErrVaultClosed", err)
	}
	if st := v.Stats(); st.Chunks != 0 || st.Keys != 0 {
		t.Errorf("Stats after Close = %+v, want nothing mapped", st)
	}
}

func TestSealRefuses(t *testing.T) {
	v := newTestVault(t)
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// ed25519 key whose public half belongs to another key.
	mismatched := genEd25519(t).(ed25519.PrivateKey)
	copy(mismatched[32:], genEd25519(t).(ed25519.PrivateKey)[32:])
	mismatchedCopy := bytes.Clone(mismatched)
	tests := []struct {
		name string
		key  any
		want string
	}{
		{"rsa-1024", short, "RSA keys shorter than 2048 bits are refused (this one has 1024)"},
		{"dsa", &dsa.PrivateKey{}, "DSA keys are not supported"},
		{"p224", p224, "ECDSA curve P-224 is not supported by SSH"},
		{"string", "not a key", "unsupported private key type string"},
		{"short-ed25519", ed25519.PrivateKey(make([]byte, 10)), "ed25519 private key has 10 bytes, want 64"},
		{"mismatched-halves", mismatched, "the private key does not match its public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := v.Seal(tt.key)
			if err == nil {
				k.Destroy()
				t.Fatal("Seal succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Seal error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if !bytes.Equal(mismatched, mismatchedCopy) {
		t.Error("a refused key was wiped: on error Seal must leave the caller's key alone")
	}
	if st := v.Stats(); st.Keys != 0 || st.UsedBytes != 0 {
		t.Errorf("refused keys left slots behind: %+v", st)
	}
}

func TestSealStored(t *testing.T) {
	v := newTestVault(t)
	for _, tk := range allKeyTypes {
		t.Run(tk.name, func(t *testing.T) {
			priv := tk.gen(t)
			want := publicOf(t, priv)
			sk, err := NewStoredKey(priv, "c", Settings{}, timeZero)
			if err != nil {
				t.Fatal(err)
			}
			if sk.Fingerprint != ssh.FingerprintSHA256(want) {
				t.Fatalf("NewStoredKey fingerprint %s, want %s", sk.Fingerprint, ssh.FingerprintSHA256(want))
			}
			pemBytes := sk.PrivateKeyPEM
			k, err := v.SealStored(&sk)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Destroy()
			if !allZero(pemBytes) {
				t.Error("SealStored left the PEM intact")
			}
			if !bytes.Equal(k.PublicKey().Marshal(), want.Marshal()) {
				t.Error("sealed a different key")
			}
		})
	}
	t.Run("wrong-fingerprint", func(t *testing.T) {
		sk, err := NewStoredKey(genEd25519(t), "c", Settings{}, timeZero)
		if err != nil {
			t.Fatal(err)
		}
		other, _ := NewStoredKey(genEd25519(t), "c", Settings{}, timeZero)
		sk.Fingerprint = other.Fingerprint
		_, err = v.SealStored(&sk)
		if err == nil || !strings.Contains(err.Error(), "holds a different key") {
			t.Errorf("SealStored = %v, want a 'holds a different key' error", err)
		}
		if st := v.Stats(); st.Keys != 0 {
			t.Errorf("refused key stayed in the vault: %+v", st)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		sk := StoredKey{Fingerprint: "SHA256:x", PrivateKeyPEM: []byte("garbage")}
		_, err := v.SealStored(&sk)
		if err == nil || !strings.Contains(err.Error(), "does not parse") || !strings.Contains(err.Error(), "safe-agent remove SHA256:x") {
			t.Errorf("SealStored = %v, want 'does not parse ... safe-agent remove'", err)
		}
	})
}

// TestConcurrentSignDestroyClose runs under -race: signatures in flight
// while keys are destroyed and the vault closes must neither crash (a read
// of unmapped memory would) nor race.
func TestConcurrentSignDestroyClose(t *testing.T) {
	v, err := NewVault(nil, VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []*LockedKey
	for _, tk := range allKeyTypes[:5] {
		k, err := v.Seal(tk.gen(t))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		for range 3 {
			wg.Go(func() {
				for range 20 {
					sig, err := k.Sign(rand.Reader, []byte("m"))
					if errors.Is(err, ErrKeyDestroyed) {
						return
					}
					if err != nil {
						t.Errorf("Sign: %v", err)
						return
					}
					if err := k.PublicKey().Verify([]byte("m"), sig); err != nil {
						t.Errorf("bad signature: %v", err)
						return
					}
				}
			})
		}
	}
	keys[0].Destroy()
	v.Close()
	wg.Wait()
}
