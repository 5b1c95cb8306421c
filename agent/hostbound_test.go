package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
)

// hbLogin is the data of a publickey login over sid; hostKey != nil makes
// it publickey-hostbound-v00@openssh.com naming that host key.
func hbLogin(user ssh.PublicKey, sid []byte, hostKey ssh.PublicKey) []byte {
	l := userAuthWire{SessionID: sid, Type: msgUserAuthRequest, User: "root", Service: "ssh-connection",
		Method: sshwire.MethodPublicKey, SigFollows: 1, Alg: user.Type(), KeyBlob: user.Marshal()}
	if hostKey != nil {
		l.Method = sshwire.MethodPublicKeyHostbound
		l.Rest = ssh.Marshal(hostboundWire{hostKey.Marshal()})
	}
	return ssh.Marshal(l)
}

// TestLoginThroughForwardedAgentMustBeHostbound is the hostile jump host:
// after the user's ssh binds jump for forwarding, root on jump binds its
// own host key to the session id of a session it opened to another host
// and asks for a plain publickey signature, which that host would accept.
func TestLoginThroughForwardedAgentMustBeHostbound(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	var khText strings.Builder
	for _, h := range []string{"jump", "target", "other"} {
		fmt.Fprintf(&khText, "%s %s", h, ssh.MarshalAuthorizedKey(btKey(t, h).PublicKey()))
	}
	os.WriteFile(kh, []byte(khText.String()), 0o600)
	restricted := fmt.Sprintf("known_hosts = [%q]\n[defaults]\nconfirm = \"never\"\n[[key]]\nmatch = \"restricted\"\nallow = [\"jump\", \"jump>target\"]\n", kh)
	open := fmt.Sprintf("known_hosts = [%q]\nunknown_destination = \"deny\"\n[defaults]\nconfirm = \"never\"\n", kh)

	for _, tc := range []struct {
		name, policy, comment string
		bindHost              string // the login bind's host key (the attacker holds jump's)
		hostbound             bool
		wantOK                bool
		wantRule              string
	}{
		{"plain login bound to jump itself", restricted, "restricted", "jump", false, false, `key "restricted" allow`},
		{"plain login bound to an allowed target", restricted, "restricted", "target", false, false, `key "restricted" allow`},
		{"hostbound login to the allowed target", restricted, "restricted", "target", true, true, `key "restricted" allow[1]`},
		{"plain login, no allow list, unknown_destination deny", open, "open", "jump", false, false, "unknown_destination"},
		{"hostbound login, no allow list", open, "open", "jump", true, true, "defaults"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := filepath.Join(t.TempDir(), "policy.toml")
			os.WriteFile(pf, []byte(tc.policy), 0o600)
			auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
			al, err := audit.Open(auditPath, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer al.Close()
			ph, err := NewPolicyHolder(pf, true, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, sock := ltServer(t, Options{Policy: ph, Audit: al})
			userPriv := ltKey(t)
			user := ltPub(t, userPriv)
			c := sshagent.NewClient(ltDial(t, sock))
			if err := c.Add(sshagent.AddedKey{PrivateKey: userPriv, Comment: tc.comment}); err != nil {
				t.Fatal(err)
			}
			// The user's ssh binds jump for forwarding; the attacker binds
			// the session it wants a signature for.
			if _, err := c.Extension(extSessionBind, btBind(t, "jump", nil, "user-to-jump", true)); err != nil {
				t.Fatalf("forwarding bind: %v", err)
			}
			sid := "attacker-session-to-other"
			if _, err := c.Extension(extSessionBind, btBind(t, tc.bindHost, nil, sid, false)); err != nil {
				t.Fatalf("login bind: %v", err)
			}
			var hk ssh.PublicKey
			if tc.hostbound {
				hk = btKey(t, tc.bindHost).PublicKey()
			}
			sig, err := c.Sign(user, hbLogin(user, []byte(sid), hk))
			if (err == nil) != tc.wantOK {
				t.Fatalf("signature given = %v, want %v (err %v)", err == nil, tc.wantOK, err)
			}
			if tc.wantOK && sig == nil {
				t.Fatal("no signature")
			}
			al.Close()
			rec := lastSignRecord(t, auditPath)
			want := map[bool]string{true: "allowed", false: "denied"}[tc.wantOK]
			if rec.Decision != want || rec.Rule != tc.wantRule {
				t.Errorf("audit: %s by %q, want %s by %q (%s)", rec.Decision, rec.Rule, want, tc.wantRule, rec.Reason)
			}
			if !tc.wantOK && !strings.Contains(rec.Reason, "not host-bound") {
				t.Errorf("the refusal does not say why: %s", rec.Reason)
			}
		})
	}
}

func lastSignRecord(t *testing.T, path string) audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last audit.Record
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Event == "sign" {
			last, found = r, true
		}
	}
	if !found {
		t.Fatal("no sign record in the audit log")
	}
	return last
}
