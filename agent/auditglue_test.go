package agent

import (
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// The audit log names a signature's purpose with policy.Purpose's String;
// audit (which must not import policy or agent) keeps its own constants
// for readers, and the two must not drift.
func TestPurposeNamesMatchAudit(t *testing.T) {
	for p, want := range map[policy.Purpose]string{
		policy.PurposeLogin:  audit.PurposeLogin,
		policy.PurposeSSHSIG: audit.PurposeSSHSig,
		policy.PurposeOpaque: audit.PurposeOpaque,
	} {
		if got := p.String(); got != want {
			t.Errorf("policy purpose %d is %q in the audit log, audit calls it %q", p, got, want)
		}
	}
}

// The sign record names the purpose as classified; a request refused
// before its data is classified (the key is not loaded) is opaque, not
// the zero Purpose (a login).
func TestSignRecordPurpose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	_, sock := ltServer(t, Options{Audit: al})
	c := sshagent.NewClient(ltDial(t, sock))
	priv := ltKey(t)
	if err := c.Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sshsig := append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace string
		Reserved  []byte
		HashAlg   string
		Hash      []byte
	}{"git", nil, "sha512", make([]byte, 64)})...)
	if _, err := c.Sign(ltPub(t, priv), sshsig); err != nil {
		t.Fatalf("local SSHSIG refused: %v", err)
	}
	if rec := lastSignRecord(t, path); rec.Purpose == nil || rec.Purpose.Kind != audit.PurposeSSHSig || rec.Purpose.Namespace != "git" {
		t.Errorf("SSHSIG recorded as %+v, want kind %q namespace git", rec.Purpose, audit.PurposeSSHSig)
	}
	other := ltKey(t)
	if _, err := c.Sign(ltPub(t, other), sshsig); err == nil {
		t.Fatal("a key that is not loaded signed")
	}
	if rec := lastSignRecord(t, path); rec.Purpose == nil || rec.Purpose.Kind != audit.PurposeOpaque || rec.Decision != audit.DecisionDenied {
		t.Errorf("unloaded key recorded as %+v (%s), want kind %q denied", rec.Purpose, rec.Decision, audit.PurposeOpaque)
	}
}
