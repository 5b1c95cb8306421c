package test

// Issue 16: safe-agent in front of upstream agents. Real OpenSSH
// ssh-agent (plain keys, a SoftHSM2 token, ssh-add -h constraints) and
// real sshd hosts; a fake upstream only where a real agent cannot be made
// to hang.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// upPolicy lets "upkey" go to jump and jump>target only and makes every
// use of "upconfirm" (target only) ask through the fake askpass.
func upPolicy(askpass string) string {
	return fmt.Sprintf(`prompt = %q
confirm_timeout = "10s"
[defaults]
confirm = "never"
[[key]]
match = "upkey"
allow = ["jump", "jump>target"]
[[key]]
match = "upconfirm"
allow = ["target"]
confirm = "always"
`, askpass)
}

// upNet is three hosts, an OpenSSH agent holding two keys safe-agent
// never sees, and a prompt program.
type upNet struct {
	n         *sshNet
	u         *upstreamAgent
	ask       *fakeAskpass
	up, upcon upKey
	dir       string
}

func newUpNet(t *testing.T) *upNet {
	t.Helper()
	s := &upNet{n: newSSHNet(t, "jump", "target", "other"), u: startUpstream(t), ask: newFakeAskpass(t), dir: t.TempDir()}
	worldReadable(t, s.dir)
	s.up = newUpKey(t, s.n, s.u, s.dir, "upkey")
	s.upcon = newUpKey(t, s.n, s.u, s.dir, "upconfirm")
	return s
}

func TestUpstreamOpenSSHPolicy(t *testing.T) {
	s := newUpNet(t)
	t.Run("--upstream", func(t *testing.T) {
		a := startAgent(t, agentOpts{policy: s.n.policy(upPolicy(s.ask.Path)), args: []string{"--upstream", s.u.Socket}})
		s.checkRouting(t, a, s.u.Socket)
		s.checkListing(t, a)
		s.checkConfirm(t, a)
		s.checkForwardedManagement(t, a)
		s.checkLock(t, a)
		s.checkOwnCopyWins(t, a)
	})
	t.Run("policy upstream", func(t *testing.T) {
		// $VAR in the policy's upstream list is expanded in the agent's
		// environment; the record names the socket it reached.
		pol := fmt.Sprintf("upstream = [\"$I16_UPSTREAM_DIR/%s\"]\n", filepath.Base(s.u.Socket)) + upPolicy(s.ask.Path)
		a := startAgent(t, agentOpts{policy: s.n.policy(pol), env: []string{"I16_UPSTREAM_DIR=" + filepath.Dir(s.u.Socket)}})
		from := recordCount(t, a)
		if out, ok := loginWith(t, a, s.n, s.up.Pub, "jump"); !ok {
			t.Fatalf("ssh jump with the key of the policy file's upstream refused:\n%s", out)
		}
		r := waitRecord(t, a, from, "of the upstream key's login", func(r upRecord) bool {
			return r.Event == "sign" && r.Decision == "allowed" && forKey(r, s.up.Fingerprint)
		})
		if r.Key.Upstream != s.u.Socket {
			t.Errorf("record: key.upstream = %q, want the expanded socket %q", r.Key.Upstream, s.u.Socket)
		}
		// The same socket from the flag too is one upstream, its keys
		// listed once.
		both := startAgent(t, agentOpts{policy: s.n.policy(pol), env: []string{"I16_UPSTREAM_DIR=" + filepath.Dir(s.u.Socket)}, args: []string{"--upstream", s.u.Socket}})
		if text, ups := statusUpstreams(t, both); len(ups) != 1 || ups[0].Socket != s.u.Socket {
			t.Errorf("flag and policy naming one socket: status shows %+v\n%s", ups, text)
		}
		if out := both.mustRun("ssh-add", "-l"); strings.Count(out, s.up.Fingerprint) != 1 {
			t.Errorf("flag and policy naming one socket: ssh-add -l does not list the key once:\n%s", out)
		}
	})
}

// checkRouting: the upstream key reaches target through jump and is
// refused on jump>other by safe-agent's policy; both records name the
// upstream socket.
func (s *upNet) checkRouting(t *testing.T, a *agentProc, socket string) {
	t.Helper()
	from := recordCount(t, a)
	if out, ok := loginWith(t, a, s.n, s.up.Pub, "jump", "target"); !ok {
		t.Fatalf("ssh -A jump ssh target with the upstream key refused:\n%s", out)
	}
	r := waitRecord(t, a, from, "of the upstream key's sign on jump>target", func(r upRecord) bool {
		return r.Event == "sign" && r.Decision == "allowed" && forKey(r, s.up.Fingerprint) && len(r.Path) == 2
	})
	if r.Key.Upstream != socket {
		t.Errorf("allowed record: key.upstream = %q, want %q (%s)", r.Key.Upstream, socket, r)
	}
	from = recordCount(t, a)
	if out, ok := loginWith(t, a, s.n, s.up.Pub, "jump", "other"); ok {
		t.Fatalf("ssh -A jump ssh other with the upstream key allowed, policy allows jump>target only:\n%s", out)
	}
	r = waitRecord(t, a, from, "refusing the upstream key on jump>other", func(r upRecord) bool {
		return isRefusal(r) && forKey(r, s.up.Fingerprint)
	})
	if r.Key.Upstream != socket || r.Rule == "upstream" {
		t.Errorf("refusal on jump>other: want safe-agent's policy rule and key.upstream %q, got %s", socket, r)
	}
	if log := s.n.hostLog("other"); strings.Contains(log, "Accepted publickey") {
		t.Errorf("other accepted a login:\n%s", tail(log, 2000))
	}
}

// checkListing: ssh-add -l and safe-agent list show the upstream keys,
// list marks them with their socket.
func (s *upNet) checkListing(t *testing.T, a *agentProc) {
	t.Helper()
	out := a.mustRun("ssh-add", "-l")
	for _, k := range []upKey{s.up, s.upcon} {
		if c := strings.Count(out, k.Fingerprint); c != 1 {
			t.Errorf("ssh-add -l through safe-agent lists %s %d times, want once:\n%s", k.Comment, c, out)
		}
	}
	out = a.mustRun(agentBin(), "list", "--keystore", "none")
	if line := lineWith(out, s.up.Fingerprint); !strings.HasSuffix(line, "(upstream "+s.u.Socket+")") {
		t.Errorf("safe-agent list: the upstream key's line %q does not end with (upstream %s):\n%s", line, s.u.Socket, out)
	}
	var keys []struct {
		Fingerprint string `json:"fingerprint"`
		Upstream    string `json:"upstream"`
	}
	out = a.mustRun(agentBin(), "list", "--keystore", "none", "--json")
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	found := 0
	for _, k := range keys {
		if k.Fingerprint == s.up.Fingerprint || k.Fingerprint == s.upcon.Fingerprint {
			found++
			if k.Upstream != s.u.Socket {
				t.Errorf("list --json: %s has upstream %q, want %q", k.Fingerprint, k.Upstream, s.u.Socket)
			}
		}
	}
	if found != 2 {
		t.Errorf("list --json has %d of the 2 upstream keys:\n%s", found, out)
	}
}

// lineWith is the first line of out containing s, trimmed ("" if none).
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// checkConfirm: a confirm rule for an upstream key asks, as for own keys;
// yes signs, no refuses, and the records hold the prompt.
func (s *upNet) checkConfirm(t *testing.T, a *agentProc) {
	t.Helper()
	for _, tc := range []struct {
		answer string
		ok     bool
	}{{"yes", true}, {"no", false}} {
		s.ask.answer(tc.answer)
		before := len(s.ask.prompts())
		from := recordCount(t, a)
		out, ok := loginWith(t, a, s.n, s.upcon.Pub, "target")
		if ok != tc.ok {
			t.Errorf("login to target with a confirm-rule upstream key, prompt answered %s: worked=%v\n%s", tc.answer, ok, out)
		}
		p := s.ask.prompts()
		if len(p) != before+1 {
			t.Errorf("answer %s: %d prompts, want 1", tc.answer, len(p)-before)
			continue
		}
		if !strings.Contains(p[len(p)-1], "upconfirm") {
			t.Errorf("the prompt does not name the key:\n%s", p[len(p)-1])
		}
		want := map[bool]string{true: "allowed", false: "denied"}[tc.ok]
		r := waitRecord(t, a, from, "of the confirmed sign ("+tc.answer+")", func(r upRecord) bool {
			return r.Event == "sign" && forKey(r, s.upcon.Fingerprint)
		})
		if r.Decision != want || len(r.Prompt) == 0 || string(r.Prompt) == "null" || r.Key.Upstream != s.u.Socket {
			t.Errorf("answer %s: record %s prompt=%s, want %s with the prompt and key.upstream", tc.answer, r, r.Prompt, want)
		}
	}
}

// checkForwardedManagement: a client on jump, through the forwarded
// agent, tries to remove the upstream key, remove everything and lock.
// The upstream agent still holds its keys and is not locked.
func (s *upNet) checkForwardedManagement(t *testing.T, a *agentProc) {
	t.Helper()
	ask := filepath.Join(s.dir, "lockpass")
	if err := os.WriteFile(ask, []byte("#!/bin/sh\necho hostile\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	remote := fmt.Sprintf("ssh-add -d %s; ssh-add -D; SSH_ASKPASS=%s SSH_ASKPASS_REQUIRE=force ssh-add -x; ssh-add -l", s.up.Pub, ask)
	out, _ := s.n.ssh(a, "-A", "-o", "IdentitiesOnly=yes", "-i", s.up.Pub, "jump", remote)
	for _, refused := range []string{"Could not remove identity", "Failed to remove all identities", "Failed to lock agent"} {
		if !strings.Contains(out, refused) {
			t.Errorf("on jump, through the forwarded agent: ssh-add did not say %q:\n%s", refused, out)
		}
	}
	s.upstreamHoldsBoth(t, "after remove/lock through the forwarded agent")
	if l := a.mustRun("ssh-add", "-l"); !strings.Contains(l, s.up.Fingerprint) {
		t.Errorf("after remove/lock through the forwarded agent, safe-agent no longer lists the upstream key:\n%s", l)
	}
	// Locally, ssh-add -d of an upstream key fails: it is not safe-agent's.
	if out, code := a.run("ssh-add", "-d", s.up.Pub); code == 0 {
		t.Errorf("local ssh-add -d of an upstream key exited 0:\n%s", out)
	}
	waitLog(t, a, "remove it there")
	s.upstreamHoldsBoth(t, "after a local ssh-add -d")
}

func (s *upNet) upstreamHoldsBoth(t *testing.T, when string) {
	t.Helper()
	l := s.u.list()
	if !strings.Contains(l, s.up.Fingerprint) || !strings.Contains(l, s.upcon.Fingerprint) {
		t.Errorf("%s: SSH_AUTH_SOCK=upstream ssh-add -l no longer lists both keys:\n%s", when, l)
	}
}

// checkLock: while safe-agent is locked its list has no upstream key and
// the upstream key does not sign; the upstream agent itself stays
// unlocked. Unlocking brings the keys back.
func (s *upNet) checkLock(t *testing.T, a *agentProc) {
	t.Helper()
	pass := filepath.Join(s.dir, "pass")
	if err := os.WriteFile(pass, []byte("#!/bin/sh\necho lockpw\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(a.env(), "SSH_ASKPASS="+pass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:none")
	if out, code := runEnv(t, env, "", "ssh-add", "-x"); code != 0 {
		t.Fatalf("ssh-add -x: exit %d\n%s", code, out)
	}
	if out, _ := a.run("ssh-add", "-l"); strings.Contains(out, s.up.Fingerprint) {
		t.Errorf("locked safe-agent lists the upstream key:\n%s", out)
	}
	if _, err := sshagent.NewClient(a.rawConn()).Sign(readPub(t, s.up.Pub), []byte("data to sign")); err == nil {
		t.Error("locked safe-agent signed with the upstream key")
	}
	s.upstreamHoldsBoth(t, "while safe-agent is locked")
	if out, code := runEnv(t, env, "", "ssh-add", "-X"); code != 0 {
		t.Fatalf("ssh-add -X: exit %d\n%s", code, out)
	}
	if out := a.mustRun("ssh-add", "-l"); !strings.Contains(out, s.up.Fingerprint) {
		t.Errorf("after unlock safe-agent does not list the upstream key:\n%s", out)
	}
}

// checkOwnCopyWins: the same key added to safe-agent too is listed once,
// as safe-agent's own.
func (s *upNet) checkOwnCopyWins(t *testing.T, a *agentProc) {
	t.Helper()
	own := filepath.Join(t.TempDir(), "upkey")
	b, err := os.ReadFile(s.up.priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(own, b, 0o600); err != nil {
		t.Fatal(err)
	}
	a.mustRun("ssh-add", own)
	out := a.mustRun("ssh-add", "-l")
	if c := strings.Count(out, s.up.Fingerprint); c != 1 {
		t.Errorf("key in both safe-agent and the upstream: ssh-add -l lists it %d times, want once:\n%s", c, out)
	}
	out = a.mustRun(agentBin(), "list", "--keystore", "none")
	if c := strings.Count(out, s.up.Fingerprint); c != 1 || strings.Contains(lineWith(out, s.up.Fingerprint), "(upstream ") {
		t.Errorf("key in both: safe-agent list shows it %d times or marks it upstream, want once as its own:\n%s", c, out)
	}
}

// TestUpstreamSoftHSM: a hardware-like key (SoftHSM2 token, EC P-256)
// behind OpenSSH's agent logs in through safe-agent, and safe-agent's
// policy applies to it.
func TestUpstreamSoftHSM(t *testing.T) {
	hsm := newSoftHSM(t)
	n := newSSHNet(t, "target", "other")
	u := startUpstream(t, hsm.env()...)
	line := hsm.load(t, u)
	dir := t.TempDir()
	worldReadable(t, dir)
	pub := filepath.Join(dir, "k1.pub")
	if err := os.WriteFile(pub, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.authorize(pub)
	fp := ssh.FingerprintSHA256(readPub(t, pub))
	// The token's key logs in with the upstream agent alone: a failure
	// below is safe-agent's.
	if out, code := runEnv(t, u.sshAddEnv(), "", "ssh", "-F", n.Config, "-o", "IdentitiesOnly=yes", "-i", pub, "target", "echo", "direct-ok"); code != 0 || !strings.Contains(out, "direct-ok") {
		t.Fatalf("SSH_AUTH_SOCK=upstream ssh target with the token key: exit %d\n%s", code, out)
	}
	a := startAgent(t, agentOpts{
		policy: n.policy(fmt.Sprintf("[defaults]\nconfirm = \"never\"\n[[key]]\nmatch = %q\nallow = [\"target\"]\n", fp)),
		args:   []string{"--upstream", u.Socket},
	})
	accepted := strings.Count(n.hostLog("target"), "Accepted publickey")
	from := recordCount(t, a)
	if out, ok := loginWith(t, a, n, pub, "target"); !ok {
		t.Fatalf("login to target with the token key through safe-agent refused:\n%s", out)
	}
	if log := n.hostLog("target"); strings.Count(log, "Accepted publickey") != accepted+1 || !strings.Contains(log, "ECDSA "+fp) {
		t.Errorf("target's sshd did not log the token key's login (Accepted publickey … ECDSA %s):\n%s", fp, tail(log, 2000))
	}
	r := waitRecord(t, a, from, "of the token key's login", func(r upRecord) bool {
		return r.Event == "sign" && r.Decision == "allowed" && forKey(r, fp)
	})
	if r.Key.Upstream != u.Socket {
		t.Errorf("token key record: key.upstream %q, want %q", r.Key.Upstream, u.Socket)
	}
	from = recordCount(t, a)
	if out, ok := loginWith(t, a, n, pub, "other"); ok {
		t.Errorf("login to other with the token key allowed, the policy allows target only:\n%s", out)
	}
	r = waitRecord(t, a, from, "refusing the token key on other", func(r upRecord) bool {
		return isRefusal(r) && forKey(r, fp)
	})
	if r.Key.Upstream != u.Socket || r.Rule == "upstream" {
		t.Errorf("refusal on other: want safe-agent's rule and key.upstream %q, got %s", u.Socket, r)
	}
	if strings.Contains(n.hostLog("other"), "Accepted publickey") {
		t.Error("other accepted a login")
	}
}

// TestUpstreamHostboundReplay: an upstream key added with ssh-add -h is
// usable through safe-agent only because safe-agent replays the client's
// session binds (OpenSSH's agent refuses a constrained key on an unbound
// connection), and the upstream's own constraints still refuse what they
// refuse, though safe-agent's policy allows everything.
func TestUpstreamHostboundReplay(t *testing.T) {
	n := newSSHNet(t, "jump", "target", "other")
	u := startUpstream(t)
	dir := t.TempDir()
	worldReadable(t, dir)
	k := newUpKey(t, n, u, dir, "bound", "-H", n.KnownHosts, "-h", "jump", "-h", "jump>target")
	a := startAgent(t, agentOpts{
		policy: n.policy("[defaults]\nconfirm = \"never\"\nmax_forward_depth = 4\n"),
		args:   []string{"--upstream", u.Socket},
	})
	if out, ok := loginWith(t, a, n, k.Pub, "jump", "target"); !ok {
		t.Fatalf("ssh -A jump ssh target with an ssh-add -h jump>target upstream key refused (binds not replayed?):\n%s", out)
	}
	if out, ok := loginWith(t, a, n, k.Pub, "jump", "other"); ok {
		t.Fatalf("ssh -A jump ssh other allowed; the upstream's ssh-add -h constraints refuse it:\n%s", out)
	}
	// ssh on jump binds other before it lists, and OpenSSH's agent hides
	// the key from that list, so ssh never asks. A client that does ask
	// (root on jump, who holds other's host key, on the forwarded agent:
	// list, bind other, sign a hostbound login for other) is refused by
	// the upstream, and the record says so.
	ag := dialFwd(t, forwardedSocket(t, n, a.env()))
	if keys, err := ag.List(); err != nil || !hasKey(keys, k.Fingerprint) {
		t.Fatalf("list on the forwarded agent on jump: %v %v; want the jump>target key", keys, err)
	}
	other := hostSigner(t, n, "other")
	sid := randomSID(t)
	if err := sendBind(ag, bindPayload(t, other.PublicKey(), other, sid, false)); err != nil {
		t.Fatalf("safe-agent refused a valid bind to other: %v", err)
	}
	from := recordCount(t, a)
	pub := readPub(t, k.Pub)
	if _, err := ag.Sign(pub, loginData(sid, currentUser(t), methodHostbound, pub, other.PublicKey())); err == nil {
		t.Error("a hostbound login for jump>other was signed; the upstream's ssh-add -h constraints refuse it")
	}
	want := "upstream agent " + u.Socket + " refused"
	r := waitRecord(t, a, from, "of the upstream's refusal", func(r upRecord) bool {
		return r.Event == "sign" && forKey(r, k.Fingerprint)
	})
	if r.Decision != "denied" || r.Rule != "upstream" || !strings.HasPrefix(r.Reason, want) || r.Key.Upstream != u.Socket {
		t.Errorf("record of jump>other: %s; want denied, rule upstream, reason starting %q", r, want)
	}
	if strings.Contains(n.hostLog("other"), "Accepted publickey") {
		t.Error("other accepted a login")
	}
}

func TestUpstreamHungAndDead(t *testing.T) {
	t.Run("hung list", testUpstreamHungList)
	t.Run("hung sign", testUpstreamHungSign)
	t.Run("dead", testUpstreamDead)
}

// ownKey adds a fresh key to safe-agent, authorized on n, and returns its
// public key file (the private half stays in the agent only).
func ownKey(t *testing.T, a *agentProc, n *sshNet, dir, name string) (pub, fp string) {
	t.Helper()
	key := newKey(t, dir, name, "ed25519", 0)
	if n != nil {
		n.authorize(key + ".pub")
	}
	a.mustRun("ssh-add", key)
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	return key + ".pub", ssh.FingerprintSHA256(readPub(t, key+".pub"))
}

// An upstream that accepts and reads but never answers: listing still
// returns, with safe-agent's own keys, in a few seconds.
func testUpstreamHungList(t *testing.T) {
	h := startHungUpstream(t, nil)
	a := startAgent(t, agentOpts{policy: "upstream_timeout = \"2s\"\n[defaults]\nconfirm = \"never\"\n", args: []string{"--upstream", h.Socket}})
	_, fp := ownKey(t, a, nil, t.TempDir(), "own")
	for i := 0; i < 2; i++ {
		start := time.Now()
		out, code := a.run("ssh-add", "-l")
		took := time.Since(start)
		if code != 0 || !strings.Contains(out, fp) {
			t.Errorf("ssh-add -l with a hung upstream: exit %d\n%s", code, out)
		}
		if took > 6*time.Second {
			t.Errorf("ssh-add -l with a hung upstream took %s; the list bound is 2s", took)
		}
		t.Logf("ssh-add -l with a hung upstream took %s", took)
	}
}

// An upstream that lists a real public key and hangs on its sign: the
// sign fails after upstream_timeout with the reason in the record, and an
// own key logs in (real ssh) while the upstream hangs.
func testUpstreamHungSign(t *testing.T) {
	n := newSSHNet(t, "target")
	dir := t.TempDir()
	worldReadable(t, dir)
	hk := newKey(t, dir, "hungkey", "ed25519", 0)
	n.authorize(hk + ".pub")
	os.Remove(hk)
	hpub := readPub(t, hk+".pub")
	h := startHungUpstream(t, []*sshagent.Key{hangKey(hpub, "hungkey")})
	a := startAgent(t, agentOpts{policy: n.policy("upstream_timeout = \"10s\"\n[defaults]\nconfirm = \"never\"\n"), args: []string{"--upstream", h.Socket}})
	// The timeout is long enough for a whole ssh login on a loaded
	// machine: the own key's login must end inside it.
	ownPub, ownFP := ownKey(t, a, n, dir, "own")

	from := recordCount(t, a)
	type result struct {
		out string
		ok  bool
	}
	hung := make(chan result, 1)
	go func() {
		out, ok := loginWith(t, a, n, hk+".pub", "target")
		hung <- result{out, ok}
	}()
	select {
	case <-h.signs:
	case r := <-hung:
		t.Fatalf("the login with the hung upstream's key ended before its sign reached the upstream:\n%s", r.out)
	case <-time.After(20 * time.Second):
		t.Fatal("no sign request reached the hung upstream")
	}
	out, ok := loginWith(t, a, n, ownPub, "target")
	if !ok {
		t.Errorf("own key login during the upstream hang refused:\n%s", out)
	}
	var r result
	select {
	case r = <-hung:
	case <-time.After(30 * time.Second):
		t.Fatal("the login with the hung upstream's key never ended: no upstream timeout")
	}
	if r.ok {
		t.Errorf("login with the hung upstream's key worked:\n%s", r.out)
	}
	rec := waitRecord(t, a, from, "of the timed-out sign", func(r upRecord) bool {
		return r.Event == "sign" && forKey(r, ssh.FingerprintSHA256(hpub))
	})
	// The own key signed while the upstream request was pending: its
	// record comes before the timeout's (the log is in order).
	own := waitRecord(t, a, from, "of the own key's sign", func(r upRecord) bool {
		return r.Event == "sign" && r.Decision == "allowed" && forKey(r, ownFP)
	})
	if own.Seq > rec.Seq {
		t.Errorf("the own key signed %s after the hung upstream's request timed out: it waited for the upstream", own.Time.Sub(rec.Time))
	}
	if rec.Decision != "denied" || rec.Rule != "upstream" || !strings.Contains(rec.Reason, "did not answer within 10s") || rec.Key.Upstream != h.Socket {
		t.Errorf("record of the hung sign: %s; want denied, rule upstream, reason with \"did not answer within 10s\", key.upstream %q", rec, h.Socket)
	}
}

// upstreamStatus is the upstreams part of `safe-agent status --json`.
type upstreamStatus struct {
	Socket    string `json:"socket"`
	Reachable bool   `json:"reachable"`
	Keys      int    `json:"keys"`
	LastError string `json:"last_error"`
}

func statusUpstreams(t *testing.T, a *agentProc) (string, []upstreamStatus) {
	t.Helper()
	text := a.mustRun(agentBin(), "status")
	var st struct {
		Upstreams []upstreamStatus `json:"upstreams"`
	}
	js := a.mustRun(agentBin(), "status", "--json")
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	return text, st.Upstreams
}

// A killed upstream ssh-agent: own keys keep working, the upstream key
// fails with "unreachable" in its record, status says so; a new
// ssh-agent on the same path with the key re-added works again without
// restarting safe-agent.
func testUpstreamDead(t *testing.T) {
	n := newSSHNet(t, "target")
	u := startUpstream(t)
	dir := t.TempDir()
	worldReadable(t, dir)
	k := newUpKey(t, n, u, dir, "upkey")
	a := startAgent(t, agentOpts{policy: n.policy("[defaults]\nconfirm = \"never\"\n"), args: []string{"--upstream", u.Socket}})
	ownPub, _ := ownKey(t, a, n, dir, "own")
	if out, ok := loginWith(t, a, n, k.Pub, "target"); !ok {
		t.Fatalf("login with the upstream key before the upstream died:\n%s", out)
	}
	text, ups := statusUpstreams(t, a)
	if !strings.Contains(text, "upstream "+u.Socket+": reachable, 1 key") || len(ups) != 1 || !ups[0].Reachable || ups[0].Keys != 1 || ups[0].Socket != u.Socket {
		t.Errorf("status with a live upstream: %+v\n%s", ups, text)
	}

	// The upstream dies between a client's list and its sign.
	c := sshagent.NewClient(a.rawConn())
	if keys, err := c.List(); err != nil || !hasKey(keys, k.Fingerprint) {
		t.Fatalf("list before the upstream died: %v %v", keys, err)
	}
	u.kill()
	from := recordCount(t, a)
	if _, err := c.Sign(readPub(t, k.Pub), []byte("data to sign")); err == nil {
		t.Error("the dead upstream's key signed")
	}
	want := "upstream agent " + u.Socket + " unreachable"
	r := waitRecord(t, a, from, "of the sign for the dead upstream's key", func(r upRecord) bool {
		return r.Event == "sign" && forKey(r, k.Fingerprint)
	})
	if r.Decision != "denied" || !strings.Contains(r.Reason, want) || r.Key.Upstream != u.Socket {
		t.Errorf("record of the sign with a dead upstream: %s; want denied with %q", r, want)
	}
	if out, ok := loginWith(t, a, n, ownPub, "target"); !ok {
		t.Errorf("own key login with the upstream dead refused:\n%s", out)
	}
	if out, ok := loginWith(t, a, n, k.Pub, "target"); ok {
		t.Errorf("login with the dead upstream's key worked:\n%s", out)
	}
	text, ups = statusUpstreams(t, a)
	if !strings.Contains(text, "upstream "+u.Socket+": unreachable (last error: ") || len(ups) != 1 || ups[0].Reachable || ups[0].LastError == "" {
		t.Errorf("status with a dead upstream: %+v\n%s", ups, text)
	}

	doctorUpstream(t, a, "warn", u.Socket+" unreachable: ")

	u.restart()
	u.add(k.priv)
	// safe-agent retries an upstream at most once a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, ok := loginWith(t, a, n, k.Pub, "target")
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login with the upstream key after the upstream came back refused:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	text, ups = statusUpstreams(t, a)
	if !strings.Contains(text, "upstream "+u.Socket+": reachable") || len(ups) != 1 || !ups[0].Reachable {
		t.Errorf("status after the upstream came back: %+v\n%s", ups, text)
	}
	doctorUpstream(t, a, "ok", u.Socket+" reachable with 1 key")
}

// doctorUpstream checks doctor's upstream line: its mark and text.
func doctorUpstream(t *testing.T, a *agentProc, mark, want string) {
	t.Helper()
	out, _ := a.run(agentBin(), "doctor")
	if m := checkLines(out)["upstream"]; m != mark || !strings.Contains(lineWith(out, " upstream "), want) {
		t.Errorf("doctor: upstream check %q, want %s with %q:\n%s", m, mark, want, out)
	}
}

func hasKey(keys []*sshagent.Key, fp string) bool {
	for _, k := range keys {
		if pk, err := ssh.ParsePublicKey(k.Blob); err == nil && ssh.FingerprintSHA256(pk) == fp {
			return true
		}
	}
	return false
}
