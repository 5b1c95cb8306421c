package agent

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

type ctNotices struct {
	mu   sync.Mutex
	msgs []string
}

func (n *ctNotices) Notify(title, body string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, title+"\n"+body)
}

func (n *ctNotices) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "\n---\n")
}

func ctUserCert(t *testing.T, pub ssh.PublicKey, after, before time.Time) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, KeyId: "alice@corp", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(after.Unix()), ValidBefore: uint64(before.Unix())}
	if err := c.SignCert(rand.Reader, btKey(t, "ca")); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertificateLeavesAtValidBefore: a certificate is removed from the
// agent at its ValidBefore (earlier than its lifetime), is never used
// after it, and its expiry is recorded and announced.
func TestCertificateLeavesAtValidBefore(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	notices := &ctNotices{}
	_, sock := ltServer(t, Options{Audit: al, Notifier: notices})
	c := sshagent.NewClient(ltDial(t, sock))
	priv := ltKey(t)
	now := time.Now()
	cert := ctUserCert(t, ltPub(t, priv), now.Add(-time.Minute), now.Add(2*time.Second))
	if err := c.Add(sshagent.AddedKey{PrivateKey: priv, Certificate: cert, Comment: "tsh", LifetimeSecs: 3600}); err != nil {
		t.Fatal(err)
	}
	keys, _ := c.List()
	if len(keys) != 1 {
		t.Fatalf("listed %d keys, want the certificate", len(keys))
	}
	if _, err := c.Sign(cert, []byte("local data")); err != nil {
		t.Fatalf("sign before expiry: %v", err)
	}
	deadline := time.Unix(int64(cert.ValidBefore), 0)
	for {
		keys, _ = c.List()
		if len(keys) == 0 {
			break
		}
		if time.Now().After(deadline.Add(time.Second)) {
			t.Fatalf("the certificate is still listed %s after its ValidBefore", time.Since(deadline))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if late := time.Since(deadline); late < 0 || late > time.Second {
		t.Errorf("removed %s after ValidBefore, want within the second", late)
	}
	if _, err := c.Sign(cert, []byte("local data")); err == nil {
		t.Error("signed with an expired certificate")
	}
	time.Sleep(100 * time.Millisecond)
	if got := notices.all(); !strings.Contains(got, `certificate "alice@corp" expired`) || !strings.Contains(got, "Principals: alice") {
		t.Errorf("notification: %q", got)
	}
	al.Close()
	b, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(b), `"certificate":{"key_id":"alice@corp","principals":["alice"],"ca_fingerprint":"`+ssh.FingerprintSHA256(btKey(t, "ca").PublicKey())+`"`) {
		t.Errorf("the sign record does not name the certificate:\n%s", b)
	}
	if !strings.Contains(string(b), `certificate \"alice@corp\" expired at`) {
		t.Errorf("no expiry record in the audit log:\n%s", b)
	}
}

func TestCertificateValidityAtAdd(t *testing.T) {
	_, sock := ltServer(t, Options{})
	c := sshagent.NewClient(ltDial(t, sock))
	priv := ltKey(t)
	now := time.Now()
	expired := ctUserCert(t, ltPub(t, priv), now.Add(-time.Hour), now.Add(-time.Minute))
	if err := c.Add(sshagent.AddedKey{PrivateKey: priv, Certificate: expired}); err == nil {
		t.Error("an expired certificate was added")
	}
	future := ctUserCert(t, ltPub(t, priv), now.Add(time.Hour), now.Add(2*time.Hour))
	if err := c.Add(sshagent.AddedKey{PrivateKey: priv, Certificate: future}); err != nil {
		t.Fatalf("a certificate valid later: %v", err)
	}
	if keys, _ := c.List(); len(keys) != 1 {
		t.Errorf("a not-yet-valid certificate is not listed")
	}
	if _, err := c.Sign(future, []byte("data")); err == nil {
		t.Error("signed with a certificate before its ValidAfter")
	}
}
