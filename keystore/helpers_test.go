package keystore

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Child processes: tests re-exec the test binary with KEYSTORE_TEST_CHILD
// naming what the child does (see childModes); the child exits from TestMain.
const childEnv = "KEYSTORE_TEST_CHILD"

// childModes are registered by the test files that need children.
var childModes = map[string]func() int{}

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		f, ok := childModes[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
			os.Exit(2)
		}
		os.Exit(f())
	}
	code := m.Run()
	if dir, ok := publicBinaryDir.Load().(string); ok {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// publicBinaryDir is the directory publicTestBinary made, removed at exit.
var publicBinaryDir atomic.Value

// needProgram skips (or fails under CI=true) when an external program is
// missing.
func needProgram(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (install the Debian package %s)", name, debianPackage)
	}
	t.Skipf("%s not found: install the Debian package %s", name, debianPackage)
	return ""
}

// publicTestBinary returns a copy of the test binary that any user can run
// (go test's own build directory is private to root).
var publicTestBinary = sync.OnceValues(func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "keystore-test-bin-")
	if err != nil {
		return "", err
	}
	publicBinaryDir.Store(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "keystore.test")
	in, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
})

type testKey struct {
	name string
	gen  func(t testing.TB) any
}

func genEd25519(t testing.TB) any {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func genEd25519Ptr(t testing.TB) any {
	p := genEd25519(t).(ed25519.PrivateKey)
	return &p
}

func genECDSA(c elliptic.Curve) func(t testing.TB) any {
	return func(t testing.TB) any {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}

// rsaCache avoids generating the same large RSA key sizes over and over
// (the machine is small); each call returns a fresh copy, since Seal wipes
// its input.
var rsaCache sync.Map

func genRSA(bits int) func(t testing.TB) any {
	return func(t testing.TB) any {
		v, ok := rsaCache.Load(bits)
		if !ok {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				t.Fatal(err)
			}
			v, _ = rsaCache.LoadOrStore(bits, k)
		}
		return cloneRSA(v.(*rsa.PrivateKey))
	}
}

func cloneRSA(k *rsa.PrivateKey) *rsa.PrivateKey {
	c := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}, D: new(big.Int).Set(k.D)}
	for _, p := range k.Primes {
		c.Primes = append(c.Primes, new(big.Int).Set(p))
	}
	c.Precompute()
	return c
}

var allKeyTypes = []testKey{
	{"ed25519", genEd25519},
	{"ed25519-pointer", genEd25519Ptr},
	{"ecdsa-p256", genECDSA(elliptic.P256())},
	{"ecdsa-p384", genECDSA(elliptic.P384())},
	{"ecdsa-p521", genECDSA(elliptic.P521())},
	{"rsa-3072", genRSA(3072)},
}

var timeZero = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var ellipticP384 = elliptic.P384()
