package test

// OpenSSH user certificates end to end: real sshd hosts that trust a user
// CA (TrustedUserCAKeys) and have an empty authorized_keys, so only a
// certificate can log in. Both ways ssh uses a certificate with an agent
// are covered: the certificate in the agent, and only the plain key in the
// agent with the certificate as a file (ssh then asks to sign with the
// plain key while the login request names the certificate).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// userCA is a user certificate authority made with ssh-keygen, as an
// administrator makes one for `ssh-keygen -s`.
type userCA struct {
	t   *testing.T
	Key string // private key file
	Pub string // public key file, for TrustedUserCAKeys
	FP  string // SHA256:… fingerprint of the CA key
}

func newUserCA(t *testing.T, dir, name string) *userCA {
	t.Helper()
	key := newKey(t, dir, name, "ed25519", 0)
	return &userCA{t: t, Key: key, Pub: key + ".pub", FP: fingerprintOf(t, key+".pub")}
}

// fingerprintOf is ssh-keygen's SHA256 fingerprint of a public key file.
func fingerprintOf(t *testing.T, pubFile string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", pubFile).CombinedOutput()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) < 2 {
		t.Fatalf("ssh-keygen -l %s: %v\n%s", pubFile, err, out)
	}
	return fields[1]
}

// sign issues a certificate for pubFile with key id id, the principals
// (comma separated) and validity in ssh-keygen -V form. ssh-keygen
// writes it as KEY-cert.pub next to KEY.pub, where ssh-add looks for it.
func (ca *userCA) sign(pubFile, id, principals, validity string) string {
	ca.t.Helper()
	args := []string{"-q", "-s", ca.Key, "-I", id, "-n", principals, "-V", validity, pubFile}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		ca.t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	return strings.TrimSuffix(pubFile, ".pub") + "-cert.pub"
}

// certUser is one user key with a certificate, loaded into two agents:
// inAgent holds key and certificate (plain `ssh-add KEY`), keyOnly holds
// the plain key (`ssh-add -k KEY`). Afterwards the private key file is
// gone: the hosts share this file system, and only the agents may sign.
type certUser struct {
	id      string // the certificate's key id
	keyFP   string // fingerprint of the plain key
	pub     string // KEY.pub, in a folder with no private key
	cert    string // the certificate, under a name ssh does not guess from -i
	inAgent *agentProc
	keyOnly *agentProc
}

func newCertUser(t *testing.T, n *sshNet, ca *userCA, typ string, bits int, id, policy string) *certUser {
	t.Helper()
	return makeCertUser(t, ca, "user", typ, bits, id, currentUser(t), n.policy(policy))
}

// makeCertUser is newCertUser with the key's file name, the certificate's
// principals and the whole policy text given.
func makeCertUser(t *testing.T, ca *userCA, keyName, typ string, bits int, id, principals, policyText string) *certUser {
	t.Helper()
	dir := t.TempDir()
	priv, pubDir := filepath.Join(dir, "priv"), filepath.Join(dir, "pub")
	for _, d := range []string{priv, pubDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := newKey(t, priv, keyName, typ, bits)
	cert := ca.sign(key+".pub", id, principals, "-5m:+1h")
	u := &certUser{id: id, keyFP: fingerprintOf(t, key+".pub"), pub: filepath.Join(pubDir, "user.pub"), cert: filepath.Join(pubDir, "cert.pub")}
	copyFile(t, key+".pub", u.pub)
	copyFile(t, cert, u.cert)

	u.inAgent = startAgent(t, agentOpts{policy: policyText})
	u.inAgent.mustRun("ssh-add", key)
	if out := u.inAgent.mustRun("ssh-add", "-L"); !strings.Contains(out, "-cert-v01@openssh.com ") {
		t.Fatalf("ssh-add %s did not add %s:\n%s", key, cert, out)
	}
	u.keyOnly = startAgent(t, agentOpts{policy: policyText})
	u.keyOnly.mustRun("ssh-add", "-k", key)
	if out := u.keyOnly.mustRun("ssh-add", "-L"); strings.Contains(out, "-cert-v01@openssh.com ") {
		t.Fatalf("ssh-add -k added a certificate:\n%s", out)
	}
	if err := os.RemoveAll(priv); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return u
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileArgs are the ssh options that present the certificate as a file
// while the agent holds only the plain key.
func (u *certUser) fileArgs() []string {
	return []string{"-o", "IdentitiesOnly=yes", "-i", u.pub, "-o", "CertificateFile=" + u.cert}
}

// certLogin logs in to target with a, directly or through jump
// (`ssh -A jump ssh target`), both hops with the ssh options args. It
// returns ssh's output and whether target was reached.
func certLogin(t *testing.T, n *sshNet, a *agentProc, viaJump bool, args []string) (string, bool) {
	t.Helper()
	hop := func(host, cmd string) []string {
		return append(append([]string{}, args...), host, cmd)
	}
	full := hop("target", "echo reached-target")
	if viaJump {
		full = append([]string{"-A"}, hop("jump", n.sshCmd(hop("target", shQuote("echo reached-target"))...))...)
	}
	out, code := n.ssh(a, full...)
	return out, code == 0 && strings.Contains(out, "reached-target")
}

// acceptedCerts counts the logins a host accepted with the certificate
// whose key id is id, as sshd logs them ("Accepted publickey … ID id").
func acceptedCerts(n *sshNet, host, id string) int {
	n.t.Helper()
	c := 0
	for _, l := range strings.Split(n.hostLog(host), "\n") {
		if strings.Contains(l, "Accepted publickey for ") && strings.Contains(l, " ID "+id+" (serial ") {
			c++
		}
	}
	return c
}

// checkCertSigns checks the agent's sign records of one login: all
// allowed logins as the user, hop by hop as wantPaths says (describe's
// form), and each names the certificate (key id and CA).
func checkCertSigns(t *testing.T, recs []audit.Record, u *certUser, ca *userCA, wantPaths ...string) {
	t.Helper()
	user := currentUser(t)
	var got []string
	for _, r := range recs {
		if r.Event != "sign" {
			continue
		}
		got = append(got, describe(r))
		if r.Key == nil || r.Key.Fingerprint == "" {
			t.Errorf("sign record without key: %s", describe(r))
		}
		b, _ := json.Marshal(r)
		if !strings.Contains(string(b), u.id) || !strings.Contains(string(b), ca.FP) {
			t.Errorf("sign record does not name certificate %q of CA %s:\n%s", u.id, ca.FP, b)
		}
	}
	var want []string
	for _, p := range wantPaths {
		want = append(want, "sign allowed login as "+user+" path="+p+" rule=defaults")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("sign records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// certPolicy turns the restrictions off that these tests are not about:
// no prompts, one forwarding hop.
const certPolicy = `[defaults]
confirm = "never"
max_forward_depth = 1
`

func TestCertLogins(t *testing.T) {
	caDir := t.TempDir()
	ca := newUserCA(t, caDir, "user_ca")
	if err := os.Chmod(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := newSSHNetWith(t, sshNetOpts{UserCA: ca.Pub}, "jump", "target")
	for _, kt := range keyTypes {
		if kt.name != "ed25519" && kt.name != "ecdsa256" && kt.name != "rsa3072" {
			continue
		}
		t.Run(kt.name, func(t *testing.T) {
			u := newCertUser(t, n, ca, kt.typ, kt.bits, "cert-"+kt.name, certPolicy)
			forms := []struct {
				name string
				a    *agentProc
				args []string
			}{
				{"cert-in-agent", u.inAgent, nil},
				{"cert-file", u.keyOnly, u.fileArgs()},
			}
			for _, f := range forms {
				t.Run(f.name+"/direct", func(t *testing.T) {
					mark, before := len(readAudit(t, f.a.Audit)), acceptedCerts(n, "target", u.id)
					if out, ok := certLogin(t, n, f.a, false, f.args); !ok {
						t.Fatalf("ssh target with a certificate failed:\n%s", out)
					}
					if got := acceptedCerts(n, "target", u.id); got != before+1 {
						t.Errorf("target accepted certificate %q %d times, want 1", u.id, got-before)
					}
					checkCertSigns(t, auditFrom(t, f.a.Audit, mark), u, ca, "target")
				})
				t.Run(f.name+"/jump", func(t *testing.T) {
					mark, before := len(readAudit(t, f.a.Audit)), acceptedCerts(n, "target", u.id)
					if out, ok := certLogin(t, n, f.a, true, f.args); !ok {
						t.Fatalf("ssh -A jump ssh target with a certificate failed:\n%s", out)
					}
					if got := acceptedCerts(n, "target", u.id); got != before+1 {
						t.Errorf("target accepted certificate %q %d times, want 1", u.id, got-before)
					}
					checkCertSigns(t, auditFrom(t, f.a.Audit, mark), u, ca, "jump", "jump(fwd)>target")
				})
			}
		})
	}

	// A certificate from a CA the hosts do not trust: the server refuses
	// it when ssh offers it, before any signature, so the agent refuses
	// nothing and signs nothing.
	t.Run("untrusted-ca", func(t *testing.T) {
		other := newUserCA(t, t.TempDir(), "other_ca")
		u := newCertUser(t, n, other, "ed25519", 0, "cert-untrusted", certPolicy)
		for _, f := range []struct {
			name string
			a    *agentProc
			args []string
		}{{"cert-in-agent", u.inAgent, nil}, {"cert-file", u.keyOnly, u.fileArgs()}} {
			mark := len(readAudit(t, f.a.Audit))
			out, ok := certLogin(t, n, f.a, false, f.args)
			if ok || !strings.Contains(out, "Permission denied (publickey)") {
				t.Errorf("%s: login with a certificate of an untrusted CA: reached=%v, want Permission denied:\n%s", f.name, ok, out)
			}
			for _, r := range auditFrom(t, f.a.Audit, mark) {
				if r.Event == "sign" || r.Decision == "denied" {
					t.Errorf("%s: the agent should have had nothing to decide, it recorded: %s (%s)", f.name, describe(r), r.Reason)
				}
			}
		}
		if log := n.hostLog("target"); !strings.Contains(log, "ID cert-untrusted (serial ") {
			t.Errorf("target's log does not show the untrusted certificate offered:\n%s", tail(log, 3000))
		}
	})
}
