//go:build linux

package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
)

// The forwarded fuzz target plays root on a jump host: the user's ssh has
// bound the connection for forwarding to jump (a real host-key signature,
// is_forwarding = 1), and everything after that comes from the attacker.
// The policy allows the "restricted" key for host-bound logins to jump and
// to jump>target, and the "open" key (no allow list) for host-bound logins
// to any named host, so a signature that the rules should refuse is not
// hidden by a policy that refuses everything.

const (
	fzRestricted = "fz-restricted"
	fzOpen       = "fz-open"
	fzFwdSID     = "fz-session-user-to-jump"
)

// fzHosts are the hosts known_hosts names; the login-bind modes bind, in
// order, nothing, jump, target and other.
var fzHosts = []string{"jump", "target", "other"}

// fzLoginSID is the session id root on jump has with host (the login bind
// and the login data use it).
func fzLoginSID(host string) string { return "fz-session-jump-to-" + host }

// fzForwarded is the forwarded target's fixture: host keys, user keys,
// the policy and the stream prefix for each login-bind mode. Every key is
// derived from a fixed seed, so seeds written to testdata stay valid in
// every process.
type fzForwarded struct {
	h          *fzHarness
	hosts      map[string]ssh.Signer
	restricted ed25519.PrivateKey
	open       *ecdsa.PrivateKey
	restPub    ssh.PublicKey
	openPub    ssh.PublicKey
	prefix     [4][]byte // by login mode: the forwarding bind, then the login bind
}

func fzEdKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(label))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newFzForwarded(tb testing.TB) *fzForwarded {
	tb.Helper()
	fx := &fzForwarded{hosts: map[string]ssh.Signer{}, restricted: fzEdKey("fz user restricted"), open: fzECKey(tb, "fz user open")}
	var kh strings.Builder
	for _, name := range fzHosts {
		s, err := ssh.NewSignerFromKey(fzEdKey("fz host " + name))
		if err != nil {
			tb.Fatal(err)
		}
		fx.hosts[name] = s
		fmt.Fprintf(&kh, "%s %s", name, ssh.MarshalAuthorizedKey(s.PublicKey()))
	}
	var err error
	if fx.restPub, err = ssh.NewPublicKey(fx.restricted.Public()); err != nil {
		tb.Fatal(err)
	}
	if fx.openPub, err = ssh.NewPublicKey(&fx.open.PublicKey); err != nil {
		tb.Fatal(err)
	}
	fwd := fzBindFrame(tb, fx.hosts["jump"], fzFwdSID, true)
	fx.prefix[0] = fwd
	for i, name := range fzHosts {
		fx.prefix[i+1] = append(slices.Clone(fwd), fzBindFrame(tb, fx.hosts[name], fzLoginSID(name), false)...)
	}

	dir := tb.TempDir()
	khPath := filepath.Join(dir, "known_hosts")
	pf := filepath.Join(dir, "policy.toml")
	pol := fmt.Sprintf(`known_hosts = [%q]
unknown_destination = "deny"
[defaults]
confirm = "never"
[[key]]
match = %q
allow = ["jump", "jump>target"]
[[key]]
match = %q
confirm = "forwarded"
`, khPath, fzRestricted, fzOpen)
	if err := os.WriteFile(khPath, []byte(kh.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(pf, []byte(pol), 0o600); err != nil {
		tb.Fatal(err)
	}
	fx.h = newFzHarness(tb, fzOptions(tb))
	ph, err := NewPolicyHolder(pf, true, nil, fx.h.opts.Audit)
	if err != nil {
		tb.Fatalf("fuzz policy: %v", err)
	}
	fx.h.opts.Policy = ph
	fx.h.preload = fx.preload
	return fx
}

// fzBindFrame is a session-bind request with a real signature of host
// over sid.
func fzBindFrame(tb testing.TB, host ssh.Signer, sid string, fwd bool) []byte {
	tb.Helper()
	sig, err := host.Sign(rand.Reader, []byte(sid))
	if err != nil {
		tb.Fatal(err)
	}
	payload := btPayload(host.PublicKey(), []byte(sid), sig, fwd)
	return fzFrames(func(ag sshagent.ExtendedAgent) { ag.Extension(extSessionBind, payload) })
}

// preload loads the two user keys, as the user's own ssh-add would have.
func (fx *fzForwarded) preload(t testing.TB, srv *Server) {
	t.Helper()
	for _, k := range []sshagent.AddedKey{{PrivateKey: fx.restricted, Comment: fzRestricted}, {PrivateKey: fx.open, Comment: fzOpen}} {
		id, err := srv.identityOf(k)
		if err != nil {
			t.Fatalf("preload %s: %v", k.Comment, err)
		}
		srv.keys.add(id)
	}
}

// inspect: after the input the agent still holds exactly the two keys and
// is not locked, whatever the replies said.
func (fx *fzForwarded) inspect(t testing.TB) func(*Server) {
	return func(srv *Server) {
		t.Helper()
		if srv.isLocked() {
			t.Error("the agent is locked after input through a forwarded agent")
			return
		}
		var got []string
		for _, id := range srv.keys.list(srv.now()) {
			got = append(got, id.Comment)
		}
		if !slices.Equal(got, []string{fzRestricted, fzOpen}) {
			t.Errorf("keys after input through a forwarded agent: %q, want [%q %q]", got, fzRestricted, fzOpen)
		}
	}
}

// fzForwardedInput is FuzzServeFramesForwarded's per-input work: the
// prefix of login mode login%4, then rest, on a fresh Server holding the
// two keys; every invariant is checked on the replies.
func fzForwardedInput(t testing.TB, fx *fzForwarded, login uint8, rest []byte) []byte {
	t.Helper()
	mode := int(login % 4)
	stream := append(slices.Clone(fx.prefix[mode]), rest...)
	// Unlocks are refused before any delay here; if that rule broke, the
	// delays would come back, and the deadline must not call that a hang.
	n := fzWrongUnlocks(stream)
	limit := 5*time.Second + time.Duration(n*(n+1)/2)*100*time.Millisecond
	replies := fx.h.serve(t, stream, limit, fx.inspect(t))
	reps := fzSplit(replies)
	binds := min(mode, 1) + 1
	if len(reps) < binds || reps[0][0] != agentSuccess || binds == 2 && reps[1][0] != agentSuccess {
		t.Fatalf("the prefix binds (mode %d) were not all accepted (replies % x): the target would not test a forwarded connection", mode, replies)
	}
	for _, v := range fx.violations(stream, replies) {
		t.Error(v)
	}
	return replies
}

// FuzzServeFramesForwarded explores what a hostile jump host can send
// through a forwarded agent: the stream starts with the user's forwarding
// bind to jump and, for login%4 = 1, 2, 3, root on jump's login bind to
// jump, target or other. Besides FuzzServeFrames' checks (no panic, no
// hang, the agent still serves, connection counts back to zero), no add,
// remove, remove-all, lock, unlock or management request may succeed, the
// keys and the lock state must be unchanged afterwards, and every
// signature must be for a host-bound login whose session id and host key
// are the last bind's, on a path the policy allows (see violations).
func FuzzServeFramesForwarded(f *testing.F) {
	ltQuietLog(f)
	fx := newFzForwarded(f)
	for _, s := range fzForwardedSeeds(f, fx) {
		f.Add(s.login, s.rest)
	}
	f.Fuzz(func(t *testing.T, login uint8, rest []byte) {
		fzForwardedInput(t, fx, login, rest)
	})
}

// fzMutations are the requests that change the agent; none may succeed
// through a forwarded agent. (SSH1's "remove all RSA identities", 9, is
// answered with success by x/crypto without calling the agent: it
// changes nothing and is left out.)
var fzMutations = map[byte]string{
	7: "add (SSH1)", 8: "remove (SSH1)", 17: "add", 18: "remove", 19: "remove-all", 20: "add smartcard key",
	21: "remove smartcard key", 22: "lock", 23: "unlock", 24: "add constrained (SSH1)", 25: "add constrained",
	26: "add constrained smartcard key",
}

// fzHop is a session-bind the agent accepted, as the stream shows it.
type fzHop struct {
	hostKey []byte
	sid     string
	fwd     bool
}

// fzBinds follows the binds of a connection from the requests and the
// agent's answers, independently of the agent's own bookkeeping.
type fzBinds struct {
	hops   []fzHop
	failed bool // some bind was refused: the agent must distrust the connection
}

// apply records one session-bind request and whether it was accepted.
func (b *fzBinds) apply(contents []byte, accepted bool) string {
	if !accepted {
		b.failed = true
		return ""
	}
	var w btBindWire
	if err := ssh.Unmarshal(contents, &w); err != nil {
		return fmt.Sprintf("a session-bind that does not parse was accepted: %v", err)
	}
	for _, h := range b.hops {
		if h.sid == string(w.SessionID) {
			return "" // a duplicate: accepted, no new hop
		}
	}
	b.hops = append(b.hops, fzHop{hostKey: w.HostKey, sid: string(w.SessionID), fwd: w.Forwarded})
	return ""
}

func (b *fzBinds) depth() int {
	n := 0
	for _, h := range b.hops {
		if h.fwd {
			n++
		}
	}
	return n
}

// fzHostboundLogin is a publickey-hostbound-v00@openssh.com userauth
// request as signed, parsed strictly (nothing may follow the host key).
type fzHostboundLogin struct {
	SessionID  []byte
	Type       byte
	User       string
	Service    string
	Method     string
	SigFollows bool
	Alg        string
	KeyBlob    []byte
	HostKey    []byte
}

// fzDataKind names signed data for a violation message.
func fzDataKind(data []byte) string {
	if bytes.HasPrefix(data, []byte(sshsigMagic)) {
		return "SSHSIG data"
	}
	var ua userAuthWire
	if ssh.Unmarshal(data, &ua) == nil && ua.Type == msgUserAuthRequest {
		return fmt.Sprintf("a %q login", ua.Method)
	}
	return "opaque data"
}

// violations checks the replies to a forwarded stream, request by
// request (ServeAgent answers each whole frame once, in order).
func (fx *fzForwarded) violations(stream, replies []byte) []string {
	reqs, reps := fzSplit(stream), fzSplit(replies)
	var out []string
	if len(reps) > len(reqs) {
		out = append(out, fmt.Sprintf("%d replies to %d requests", len(reps), len(reqs)))
		reps = reps[:len(reqs)]
	}
	var binds fzBinds
	for i, rep := range reps {
		req := reqs[i]
		ok := rep[0] == agentSuccess
		switch req[0] {
		case 27: // SSH_AGENTC_EXTENSION
			var ext struct {
				Name     string
				Contents []byte `ssh:"rest"`
			}
			if ssh.Unmarshal(req[1:], &ext) != nil {
				continue
			}
			switch ext.Name {
			case extSessionBind:
				if v := binds.apply(ext.Contents, ok); v != "" {
					out = append(out, fmt.Sprintf("request %d: %s", i, v))
				}
			case ExtList, ExtStatus, ExtForget:
				if ok {
					out = append(out, fmt.Sprintf("request %d: management extension %s succeeded through a forwarded agent", i, ext.Name))
				}
			}
		case 13: // SSH_AGENTC_SIGN_REQUEST
			if rep[0] == 14 {
				if v := fx.signViolation(&binds, req, rep); v != "" {
					out = append(out, fmt.Sprintf("request %d: %s", i, v))
				}
			}
		default:
			if op, mut := fzMutations[req[0]]; mut && ok {
				out = append(out, fmt.Sprintf("request %d: %s succeeded through a forwarded agent", i, op))
			}
		}
	}
	return out
}

// signViolation says what is wrong with a signature the agent returned
// through the forwarded agent, or "" if the policy allows it: a host-bound
// login whose session id and host key are those of the last bind, a bind
// for a login (is_forwarding = 0), no refused bind, at most one
// forwarding hop (max_forward_depth = 1), the login naming the signing
// key, for the restricted key only jump or target, and a signature that
// verifies.
func (fx *fzForwarded) signViolation(binds *fzBinds, req, rep []byte) string {
	var sr struct {
		KeyBlob []byte
		Data    []byte
		Flags   uint32
	}
	if err := ssh.Unmarshal(req[1:], &sr); err != nil {
		return fmt.Sprintf("a signature for a sign request that does not parse (%v)", err)
	}
	var login fzHostboundLogin
	if ssh.Unmarshal(sr.Data, &login) != nil || login.Type != msgUserAuthRequest || login.Method != sshwire.MethodPublicKeyHostbound {
		return fmt.Sprintf("a signature over %s through a forwarded agent: only host-bound logins may be signed", fzDataKind(sr.Data))
	}
	n := len(binds.hops)
	switch {
	case binds.failed:
		return "a login signed after a session-bind on the connection was refused"
	case n == 0 || binds.hops[n-1].fwd:
		return "a login signed while the last bind is a forwarding bind (no login destination bound)"
	case string(login.SessionID) != binds.hops[n-1].sid:
		return fmt.Sprintf("a login signed for session id %q, but the last bind is for %q", login.SessionID, binds.hops[n-1].sid)
	case !bytes.Equal(login.HostKey, binds.hops[n-1].hostKey):
		return "a host-bound login signed whose host key is not the last bind's"
	case binds.depth() > 1:
		return fmt.Sprintf("a login signed through %d forwarding hops (max_forward_depth = 1)", binds.depth())
	case !bytes.Equal(login.KeyBlob, sr.KeyBlob):
		return "a login signed that names another key than the signing one"
	}
	if bytes.Equal(sr.KeyBlob, fx.restPub.Marshal()) {
		dest := ""
		for name, s := range fx.hosts {
			if bytes.Equal(s.PublicKey().Marshal(), login.HostKey) {
				dest = name
			}
		}
		if dest != "jump" && dest != "target" {
			return fmt.Sprintf("the restricted key signed a login to %q, outside its allow list (jump, jump>target)", dest)
		}
	}
	var resp struct{ SigBlob []byte }
	var sig ssh.Signature
	pub, err := ssh.ParsePublicKey(sr.KeyBlob)
	if err != nil || ssh.Unmarshal(rep[1:], &resp) != nil || ssh.Unmarshal(resp.SigBlob, &sig) != nil {
		return "a sign response that does not parse"
	}
	if err := pub.Verify(sr.Data, &sig); err != nil {
		return fmt.Sprintf("a signature that does not verify: %v", err)
	}
	return ""
}

// fzForwardedSeed is one seed of the forwarded target; want, when not
// nil, is the reply types the agent must give (the forwarding and login
// binds' replies included), checked by TestFuzzForwardedSeeds.
type fzForwardedSeed struct {
	name  string
	login uint8
	rest  []byte
	want  []byte
}

// fzSSHSIG is the data ssh-keygen -Y sign asks to sign.
func fzSSHSIG(namespace string) []byte {
	h := sha512.Sum512([]byte("message"))
	return append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace, Reserved, HashAlg string
		Hash                         []byte
	}{namespace, "", "sha512", h[:]})...)
}

// fzForwardedSeeds are what a jump host would try: lists, plain and
// host-bound logins, SSHSIG and opaque data, key and lock changes,
// management requests, binds in every order, and garbage.
func fzForwardedSeeds(tb testing.TB, fx *fzForwarded) []fzForwardedSeed {
	tb.Helper()
	rest, open := fx.restPub, fx.openPub
	jump, target, other := fx.hosts["jump"].PublicKey(), fx.hosts["target"].PublicKey(), fx.hosts["other"].PublicKey()
	sign := func(k ssh.PublicKey, data []byte) []byte {
		return fzFrames(func(ag sshagent.ExtendedAgent) { ag.Sign(k, data) })
	}
	sid := func(h string) []byte { return []byte(fzLoginSID(h)) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	list := fzFrames(func(ag sshagent.ExtendedAgent) { ag.List() })
	const (
		ok, fail, ids, sig = agentSuccess, 5, 12, 14
	)
	seeds := []fzForwardedSeed{
		{"list", 0, list, []byte{ok, ids}},
		{"list-after-login-bind", 1, cat(list, list), []byte{ok, ok, ids, ids}},
		// The critical hole: root on jump binds its own host key to a
		// session it opened elsewhere and asks for a plain login.
		{"plain-login-restricted-bound-jump", 1, sign(rest, hbLogin(rest, sid("jump"), nil)), []byte{ok, ok, fail}},
		{"plain-login-restricted-bound-target", 2, sign(rest, hbLogin(rest, sid("target"), nil)), []byte{ok, ok, fail}},
		{"plain-login-open-bound-jump", 1, sign(open, hbLogin(open, sid("jump"), nil)), []byte{ok, ok, fail}},
		{"plain-login-no-login-bind", 0, sign(rest, hbLogin(rest, []byte(fzFwdSID), nil)), []byte{ok, fail}},
		// Host-bound logins the policy allows: these signatures show the
		// invariants are not vacuous.
		{"hostbound-restricted-jump", 1, sign(rest, hbLogin(rest, sid("jump"), jump)), []byte{ok, ok, sig}},
		{"hostbound-restricted-target", 2, sign(rest, hbLogin(rest, sid("target"), target)), []byte{ok, ok, sig}},
		// A prompt (confirm = "forwarded") is asked only while the client
		// is connected: a request after the sign keeps the connection
		// from looking hung up (see watchHangup).
		{"hostbound-open-other", 3, cat(sign(open, hbLogin(open, sid("other"), other)), list), []byte{ok, ok, sig, ids}},
		{"hostbound-open-other-hangup", 3, sign(open, hbLogin(open, sid("other"), other)), []byte{ok, ok, fail}},
		// Host-bound logins that must be refused.
		{"hostbound-restricted-other", 3, sign(rest, hbLogin(rest, sid("other"), other)), []byte{ok, ok, fail}},
		{"hostbound-wrong-host-key", 1, sign(rest, hbLogin(rest, sid("jump"), target)), []byte{ok, ok, fail}},
		{"hostbound-forwarding-sid", 1, sign(rest, hbLogin(rest, []byte(fzFwdSID), jump)), []byte{ok, ok, fail}},
		{"hostbound-no-login-bind", 0, sign(rest, hbLogin(rest, []byte(fzFwdSID), jump)), []byte{ok, fail}},
		{"hostbound-names-other-key", 1, sign(rest, hbLogin(open, sid("jump"), jump)), []byte{ok, ok, fail}},
		// SSHSIG and opaque data are for the user's own machine.
		{"sshsig-git", 1, sign(rest, fzSSHSIG("git")), []byte{ok, ok, fail}},
		{"sshsig-file-open", 0, sign(open, fzSSHSIG("file")), []byte{ok, fail}},
		{"opaque", 2, sign(open, bytes.Repeat([]byte{0x42}, 64)), []byte{ok, ok, fail}},
		{"sign-with-flags", 1, fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.SignWithFlags(rest, hbLogin(rest, sid("jump"), jump), sshagent.SignatureFlagRsaSha512)
		}), []byte{ok, ok, sig}},
		// Key and lock changes.
		{"add-remove-lock", 1, fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: fzEdKey("fz attacker key"), Comment: "attacker"})
			ag.Add(sshagent.AddedKey{PrivateKey: fzEdKey("fz attacker key"), Comment: fzRestricted, ConstraintExtensions: []sshagent.ConstraintExtension{
				{ExtensionName: ExtKeySettings, ExtensionDetails: []byte(`{"allow":["*"]}`)},
			}})
			ag.Remove(rest)
			ag.RemoveAll()
			ag.Lock([]byte("pw"))
			ag.Unlock([]byte("pw"))
			ag.List()
		}), []byte{ok, ok, fail, fail, fail, fail, fail, fail, ids}},
		{"lock-then-sign", 0, fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Lock([]byte("x"))
			ag.Sign(rest, hbLogin(rest, []byte(fzFwdSID), jump))
			ag.Unlock([]byte("y"))
			ag.Unlock([]byte("x"))
		}), []byte{ok, fail, fail, fail, fail}},
		{"management-extensions", 0, fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Extension(ExtList, nil)
			ag.Extension(ExtStatus, nil)
			ag.Extension(ExtForget, nil)
		}), nil},
		{"extension-garbage", 1, cat(
			fzFrames(func(ag sshagent.ExtendedAgent) {
				ag.Extension("no-such-extension@example.com", []byte{0xff, 0, 0, 0})
				ag.Extension(extSessionBind, []byte("garbage"))
			}),
			fzFrame(27, 0, 0, 0, 24, 's', 'e', 's', 's', 'i', 'o', 'n'),
			sign(rest, hbLogin(rest, sid("jump"), jump)),
		), nil},
		// Binds root on jump can send: a bind after the login bind, a
		// second forwarding hop, a duplicate of the user's bind.
		{"bind-after-login-bind", 1, cat(fzBindFrame(tb, fx.hosts["target"], fzLoginSID("target"), false),
			sign(rest, hbLogin(rest, sid("target"), target))), []byte{ok, ok, fail, fail}},
		{"second-forwarding-hop", 0, cat(fzBindFrame(tb, fx.hosts["target"], "fz-session-jump-to-target-fwd", true),
			fzBindFrame(tb, fx.hosts["other"], fzLoginSID("other"), false),
			sign(open, hbLogin(open, sid("other"), other))), []byte{ok, ok, ok, fail}},
		{"duplicate-forwarding-bind", 0, cat(fzBindFrame(tb, fx.hosts["jump"], fzFwdSID, true),
			fzBindFrame(tb, fx.hosts["jump"], fzLoginSID("jump"), false),
			sign(rest, hbLogin(rest, sid("jump"), jump))), []byte{ok, ok, ok, sig}},
		{"login-bind-in-stream", 0, cat(fzBindFrame(tb, fx.hosts["target"], fzLoginSID("target"), false),
			sign(rest, hbLogin(rest, sid("target"), target)), sign(rest, hbLogin(rest, sid("target"), nil))), []byte{ok, ok, sig, fail}},
		// Malformed frames after a valid start.
		{"oversized-frame", 1, []byte{0xff, 0xff, 0xff, 0xff, 11}, []byte{ok, ok}},
		{"empty-frame", 1, []byte{0, 0, 0, 0}, []byte{ok, ok}},
		{"unknown-type", 2, fzFrame(200, 1, 2, 3), []byte{ok, ok, fail}},
		{"truncated-sign", 1, fzFrame(13, 0, 0, 0, 50, 1), []byte{ok, ok, fail}},
	}
	return seeds
}

// TestFuzzForwardedSeeds runs the forwarded seeds through the target's
// own per-input function and checks the replies they were written for:
// the allowed host-bound logins really get signatures (so the
// invariants are not vacuous) and the attacks really are refused.
func TestFuzzForwardedSeeds(t *testing.T) {
	ltQuietLog(t)
	fx := newFzForwarded(t)
	for _, s := range fzForwardedSeeds(t, fx) {
		t.Run(s.name, func(t *testing.T) {
			replies := fzForwardedInput(t, fx, s.login, s.rest)
			if s.want == nil {
				return
			}
			var got []byte
			for _, r := range fzSplit(replies) {
				got = append(got, r[0])
			}
			if !bytes.Equal(got, s.want) {
				t.Errorf("reply types %v, want %v", got, s.want)
			}
		})
	}
}

// TestFuzzForwardedViolations shows that the invariant checker catches
// what it is for: real replies put against requests they would break a
// rule for.
func TestFuzzForwardedViolations(t *testing.T) {
	ltQuietLog(t)
	fx := newFzForwarded(t)
	seeds := map[string]fzForwardedSeed{}
	for _, s := range fzForwardedSeeds(t, fx) {
		seeds[s.name] = s
	}
	run := func(name string) (stream, replies []byte) {
		s := seeds[name]
		stream = append(slices.Clone(fx.prefix[s.login%4]), s.rest...)
		return stream, fzForwardedInput(t, fx, s.login, s.rest)
	}
	_, signed := run("hostbound-restricted-jump") // bind, bind, signature
	swap := func(name string) []byte {
		stream, _ := run(name)
		return stream
	}
	for _, tc := range []struct {
		name    string
		stream  []byte
		replies []byte
		want    string
	}{
		{"plain login signed", swap("plain-login-restricted-bound-jump"), signed, `"publickey" login through a forwarded agent`},
		{"SSHSIG signed", swap("sshsig-git"), signed, "SSHSIG data"},
		{"opaque signed", swap("opaque"), signed, "opaque data"},
		{"wrong host key signed", swap("hostbound-wrong-host-key"), signed, "host key is not the last bind's"},
		{"forwarding session signed", swap("hostbound-forwarding-sid"), signed, "session id"},
		{"restricted key to other", swap("hostbound-restricted-other"), signed, "outside its allow list"},
		{"add succeeded", swap("add-remove-lock"), bytes.Repeat(fzFrame(agentSuccess), 9), "add succeeded"},
		{"lock succeeded", swap("lock-then-sign"), bytes.Repeat(fzFrame(agentSuccess), 5), "lock succeeded"},
		{"status succeeded", swap("management-extensions"), bytes.Repeat(fzFrame(agentSuccess), 4), "status-v0@safe-agent succeeded"},
	} {
		got := strings.Join(fx.violations(tc.stream, tc.replies), "\n")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: violations %q, want one saying %q", tc.name, got, tc.want)
		}
	}
	stream, replies := run("hostbound-restricted-jump")
	if v := fx.violations(stream, replies); len(v) != 0 {
		t.Errorf("an allowed host-bound login reported as violations: %q", v)
	}
}
