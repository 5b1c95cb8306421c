package policy

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testKey is a deterministic ed25519 host key.
type testKey struct {
	pub    ssh.PublicKey
	signer ssh.Signer
}

func newTestKey(t testing.TB, seed byte) testKey {
	t.Helper()
	var s [32]byte
	for i := range s {
		s[i] = seed
	}
	priv := ed25519.NewKeyFromSeed(s[:])
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{pub: signer.PublicKey(), signer: signer}
}

func (k testKey) fp() string { return ssh.FingerprintSHA256(k.pub) }

// line is a known_hosts line for hosts (a comma list, or "@marker hosts").
func (k testKey) line(hosts string) string {
	return hosts + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.pub)))
}

// hostCert certifies k as a host certificate signed by ca.
func hostCert(t testing.TB, k, ca testKey, certType uint32, after, before uint64, principals ...string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             k.pub,
		CertType:        certType,
		KeyId:           "test",
		ValidPrincipals: principals,
		ValidAfter:      after,
		ValidBefore:     before,
	}
	if err := c.SignCert(rand.Reader, ca.signer); err != nil {
		t.Fatal(err)
	}
	return c
}

// files is an in-memory file system for Parse's readFile.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	s, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return []byte(s), nil
}

func mustParse(t testing.TB, src string, fsys files) *Policy {
	t.Helper()
	p, err := Parse("/etc/policy.toml", []byte(src), fsys.read)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// world is the set of hosts the decision tests use.
type world struct {
	jump, db, git, lab, hashed, other, ca, revoked, prod, stranger, certified, evil, userKey testKey
	knownHosts                                                                               string
	dbCert, evilCert, expiredCert, userCert, badCASig                                        *ssh.Certificate
}

func newWorld(t testing.TB) *world {
	w := &world{
		jump: newTestKey(t, 1), db: newTestKey(t, 2), git: newTestKey(t, 3), lab: newTestKey(t, 4),
		hashed: newTestKey(t, 5), other: newTestKey(t, 6), ca: newTestKey(t, 7), revoked: newTestKey(t, 8),
		prod: newTestKey(t, 9), stranger: newTestKey(t, 10), certified: newTestKey(t, 11), evil: newTestKey(t, 12),
		userKey: newTestKey(t, 13),
	}
	w.knownHosts = strings.Join([]string{
		"# test known_hosts",
		w.jump.line("jump.example"),
		w.db.line("db.internal,10.0.0.5"),
		w.git.line("[git.example]:2222"),
		w.lab.line("*.lab,!secret.lab"),
		w.hashed.line(knownhosts.HashHostname("hashed.example")),
		w.other.line("other.example"),
		w.ca.line("@cert-authority *.certified,!evil.certified"),
		w.revoked.line("@revoked *"),
		w.revoked.line("revoked.example"),
		w.prod.line("db1.prod.internal"),
		"",
	}, "\n")
	const forever = ssh.CertTimeInfinity
	w.dbCert = hostCert(t, w.certified, w.ca, ssh.HostCert, 0, forever, "web.certified", "stray.example")
	w.evilCert = hostCert(t, w.evil, w.ca, ssh.HostCert, 0, forever, "evil.certified")
	w.expiredCert = hostCert(t, w.certified, w.ca, ssh.HostCert, 0, 1000, "web.certified")
	w.userCert = hostCert(t, w.certified, w.ca, ssh.UserCert, 0, forever, "web.certified")
	// A certificate claiming the CA but signed by someone else.
	forged := hostCert(t, w.certified, w.stranger, ssh.HostCert, 0, forever, "web.certified")
	forged.SignatureKey = w.ca.pub
	w.badCASig = forged
	return w
}
