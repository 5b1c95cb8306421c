package test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// destSetup is three real sshd hosts (jump, target, other), an agent
// with a policy, and one key added with plain ssh-add (or ssh-add -h).
type destSetup struct {
	t   *testing.T
	n   *sshNet
	a   *agentProc
	key string
	dir string
}

func newDestSetup(t *testing.T, policyBody string, addArgs ...string) *destSetup {
	t.Helper()
	return newDestSetupWith(t, policyBody, func(*sshNet) []string { return addArgs })
}

// newDestSetupWith is newDestSetup with ssh-add arguments that may depend
// on the net (its known_hosts, for ssh-add -h).
func newDestSetupWith(t *testing.T, policyBody string, addArgs func(*sshNet) []string) *destSetup {
	t.Helper()
	n := newSSHNet(t, "jump", "target", "other")
	a := startAgent(t, agentOpts{policy: n.policy(policyBody)})
	dir := t.TempDir()
	key := newKey(t, dir, "user", "ed25519", 0)
	n.authorize(key + ".pub")
	a.mustRun("ssh-add", append(addArgs(n), key)...)
	// The private key file must not be reachable from the "remote" hosts,
	// which share this file system: only the agent can sign.
	os.Rename(key, key+".moved")
	pubDir := filepath.Join(dir, "pub")
	os.Mkdir(pubDir, 0o755)
	b, _ := os.ReadFile(key + ".pub")
	os.WriteFile(filepath.Join(pubDir, "user.pub"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "msg"), []byte("hello\n"), 0o644)
	os.Chmod(dir, 0o755)
	return &destSetup{t: t, n: n, a: a, key: key, dir: dir}
}

// path runs a login along hops: path("jump","target") is
// ssh -A jump 'ssh target echo reached-target'.
func (s *destSetup) path(hops ...string) (string, bool) {
	s.t.Helper()
	last := hops[len(hops)-1]
	cmd := "echo reached-" + last
	for i := len(hops) - 1; i > 0; i-- {
		fwd := ""
		if i < len(hops)-1 {
			fwd = "-A "
		}
		cmd = fmt.Sprintf("ssh -F %s %s%s %s", s.n.Config, fwd, hops[i], shQuote(cmd))
	}
	args := []string{hops[0], cmd}
	if len(hops) > 1 {
		args = append([]string{"-A"}, args...)
	}
	out, code := s.n.ssh(s.a, args...)
	return out, code == 0 && strings.Contains(out, "reached-"+last)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (s *destSetup) mustReach(hops ...string) {
	s.t.Helper()
	if out, ok := s.path(hops...); !ok {
		s.t.Errorf("here→%s refused, want allowed:\n%s", strings.Join(hops, "→"), out)
	}
}

func (s *destSetup) mustNotReach(hops ...string) {
	s.t.Helper()
	if out, ok := s.path(hops...); ok {
		s.t.Errorf("here→%s allowed, want refused:\n%s", strings.Join(hops, "→"), out)
	}
}

// signOn runs ssh-keygen -Y sign on a host through the forwarded agent
// ("" = here, locally).
func (s *destSetup) signOn(host, ns string) (string, bool) {
	s.t.Helper()
	msg := filepath.Join(s.dir, "msg")
	os.Remove(msg + ".sig")
	cmd := fmt.Sprintf("ssh-keygen -Y sign -f %s -n %s %s", filepath.Join(s.dir, "pub", "user.pub"), ns, msg)
	var out string
	var code int
	if host == "" {
		out, code = s.a.run("sh", "-c", cmd)
	} else {
		out, code = s.n.ssh(s.a, "-A", host, cmd)
	}
	_, err := os.Stat(msg + ".sig")
	return out, code == 0 && err == nil
}

func (s *destSetup) refusedInLog(want string) {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(s.a.stderr.String(), want) {
		if time.Now().After(deadline) {
			s.t.Errorf("agent log lacks %q", want)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPolicyJumpOnlyDepth0(t *testing.T) {
	s := newDestSetup(t, `[defaults]
confirm = "never"
[[key]]
match = "user"
allow = ["jump"]
max_forward_depth = 0
`)
	s.mustReach("jump")
	s.mustNotReach("target")
	s.mustNotReach("jump", "target")
	if out, ok := s.signOn("jump", "file"); ok {
		t.Errorf("ssh-keygen -Y sign on jump through the forwarded agent worked:\n%s", out)
	}
	if out, ok := s.signOn("", "file"); !ok {
		t.Errorf("local ssh-keygen -Y sign refused:\n%s", out)
	}
	s.refusedInLog(`rule="key \"user\" allow"`)
}

func TestPolicyJumpToTarget(t *testing.T) {
	s := newDestSetup(t, `[defaults]
confirm = "never"
[[key]]
match = "user"
allow = ["jump", "jump>target"]
`)
	s.mustReach("jump", "target")
	s.mustReach("jump")
	s.mustNotReach("jump", "other")
	s.mustNotReach("target")
	s.mustNotReach("jump", "target", "other")
	if out, ok := s.signOn("", "file"); !ok {
		t.Errorf("local ssh-keygen -Y sign -n file refused:\n%s", out)
	}
}

func TestPolicyDepthOneNoAllowList(t *testing.T) {
	s := newDestSetup(t, `[defaults]
confirm = "never"
max_forward_depth = 1
`)
	s.mustReach("jump", "target")
	s.mustReach("other")
	s.mustNotReach("jump", "target", "other")
	s.refusedInLog(`shown=0 "keys hidden by policy"=1`)
}

// The same scenarios through ssh-add -h, with a policy that adds nothing,
// give OpenSSH's results.
func TestSSHAddDestinationConstraints(t *testing.T) {
	open := "[defaults]\nconfirm = \"never\"\nmax_forward_depth = 4\n"
	t.Run("jump only", func(t *testing.T) {
		s := newDestSetupH(t, open, "jump")
		s.mustReach("jump")
		s.mustNotReach("target")
		s.mustNotReach("jump", "target")
		// As in OpenSSH, an ssh-add -h key signs nothing but bound logins.
		if out, ok := s.signOn("", "file"); ok {
			t.Errorf("ssh-add -h key signed locally:\n%s", out)
		}
		if out, ok := s.signOn("jump", "file"); ok {
			t.Errorf("ssh-add -h key signed on jump:\n%s", out)
		}
	})
	t.Run("jump>target", func(t *testing.T) {
		s := newDestSetupH(t, open, "jump", "jump>target")
		s.mustReach("jump", "target")
		s.mustReach("jump")
		s.mustNotReach("jump", "other")
		s.mustNotReach("target")
		s.mustNotReach("jump", "target", "other")
	})
}

// newDestSetupH adds the key with ssh-add -h for each destination, host
// keys taken from the test known_hosts (ssh-add -H).
func newDestSetupH(t *testing.T, policyBody string, dests ...string) *destSetup {
	t.Helper()
	return newDestSetupWith(t, policyBody, func(n *sshNet) []string {
		args := []string{"-H", n.KnownHosts}
		for _, d := range dests {
			args = append(args, "-h", d)
		}
		return args
	})
}

// bindPayload builds a session-bind@openssh.com payload signed by signer
// (which may differ from hostKey, for a forgery).
func bindPayload(t *testing.T, hostKey ssh.PublicKey, signer ssh.Signer, sid []byte, fwd bool) []byte {
	sig, err := signer.Sign(rand.Reader, sid)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Marshal(struct {
		HostKey, SessionID, Signature []byte
		Forwarded                     bool
	}{hostKey.Marshal(), sid, ssh.Marshal(sig), fwd})
}

func newHostSigner(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestForgedBinds(t *testing.T) {
	a := startAgent(t, agentOpts{policy: "[defaults]\nconfirm = \"never\"\n"})
	dir := t.TempDir()
	// One plain key, one restricted by policy (an allow list).
	a.mustRun("ssh-add", newKey(t, dir, "plain", "ed25519", 0))
	a.mustRun("ssh-add", newKey(t, dir, "restricted", "ed25519", 0))
	h1, h2 := newHostSigner(t), newHostSigner(t)
	sid := func(b byte) []byte { s := make([]byte, 32); s[0] = b; return s }
	cases := []struct {
		name  string
		binds func() [][]byte // the last one must fail
	}{
		{"bad signature", func() [][]byte {
			return [][]byte{bindPayload(t, h1.PublicKey(), h2, sid(1), true)}
		}},
		{"replayed session id with another key", func() [][]byte {
			return [][]byte{bindPayload(t, h1.PublicKey(), h1, sid(1), true), bindPayload(t, h2.PublicKey(), h2, sid(1), true)}
		}},
		{"bind after an authentication bind", func() [][]byte {
			return [][]byte{bindPayload(t, h1.PublicKey(), h1, sid(1), false), bindPayload(t, h2.PublicKey(), h2, sid(2), true)}
		}},
		{"17th bind", func() [][]byte {
			var bs [][]byte
			for i := 0; i < 17; i++ {
				bs = append(bs, bindPayload(t, h1.PublicKey(), h1, sid(byte(i+1)), true))
			}
			return bs
		}},
		{"garbled payload", func() [][]byte {
			return [][]byte{bindPayload(t, h1.PublicKey(), h1, sid(1), true)[:20]}
		}},
		{"session id over 128 bytes", func() [][]byte {
			return [][]byte{bindPayload(t, h1.PublicKey(), h1, make([]byte, 129), true)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sshagent.NewClient(a.rawConn()).(sshagent.ExtendedAgent)
			keys, err := c.List()
			if err != nil || len(keys) != 2 {
				t.Fatalf("list before binds: %v %v", keys, err)
			}
			binds := tc.binds()
			for i, b := range binds {
				_, err := c.Extension("session-bind@openssh.com", b)
				if i < len(binds)-1 && err != nil {
					t.Fatalf("valid bind %d refused: %v", i, err)
				}
				if i == len(binds)-1 && err != sshagent.ErrExtensionUnsupported {
					t.Fatalf("forged bind answered %v, want SSH_AGENT_FAILURE", err)
				}
			}
			// The connection is no longer local: no signature of any
			// kind with any key (it is never treated as local again).
			for _, k := range keys {
				if _, err := c.Sign(k, []byte("opaque data")); err == nil {
					t.Errorf("key %s signed on a connection with a failed bind", k.Comment)
				}
			}
		})
	}
	if !strings.Contains(a.stderr.String(), "session-bind refused") {
		t.Errorf("failed binds not logged")
	}
	failed := 0
	for _, r := range readAudit(t, a.Audit) {
		if r.Event == "bind-failed" && r.Decision == "denied" && r.Reason != "" && r.Client != nil {
			failed++
		}
	}
	if failed != len(cases) {
		t.Errorf("%d bind-failed audit records, want %d (one per forged bind)", failed, len(cases))
	}
}

func TestPolicyCheckAndReload(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[defaults]\nconfirm = \"sometimes\"\n"), 0o644)
	out, code := runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, "", agentBin(), "policy", "check", bad)
	if code == 0 || !strings.Contains(out, bad+":2:") {
		t.Fatalf("policy check on a broken file: exit %d %q, want FILE:LINE:COL", code, out)
	}
	// serve refuses to start on a broken policy.
	out, code = runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, "", agentBin(), "serve", "--keystore", "none", "--policy", bad, "--socket", filepath.Join(shortTempDir(t), "s"), "--audit-log", filepath.Join(dir, "a.jsonl"))
	if code == 0 || !strings.Contains(out, bad+":2:") {
		t.Fatalf("serve with a broken policy: exit %d %q", code, out)
	}

	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{policy: n.policy("[defaults]\nconfirm = \"never\"\n[[key]]\nmatch = \"user\"\nallow = [\"jump\"]\n")})
	k := newKey(t, t.TempDir(), "user", "ed25519", 0)
	n.authorize(k + ".pub")
	a.mustRun("ssh-add", k)
	pf := filepath.Join(filepath.Dir(a.Home), "config", "policy.toml")
	reach := func(h string) bool {
		out, code := n.ssh(a, h, "echo", "ok")
		return code == 0 && strings.Contains(out, "ok")
	}
	if !reach("jump") || reach("target") {
		t.Fatal("initial policy not in force")
	}
	// A broken edit: the last good policy stays in force, the log says so.
	os.WriteFile(pf, []byte("[defaults\n"), 0o600)
	waitLog(t, a, "policy reload failed")
	if !reach("jump") || reach("target") {
		t.Error("a broken edit changed what is allowed")
	}
	// A good edit takes effect without a restart.
	os.WriteFile(pf, []byte(n.policy("[defaults]\nconfirm = \"never\"\n[[key]]\nmatch = \"user\"\nallow = [\"target\"]\n")), 0o600)
	waitLog(t, a, "policy reloaded")
	if reach("jump") || !reach("target") {
		t.Error("edited policy not in force after reload")
	}
}

func waitLog(t *testing.T, a *agentProc, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("agent log lacks %q:\n%s", want, a.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
