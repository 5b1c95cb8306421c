package test

// The attacker suite of issue 11: root on a jump host, holding the agent
// socket a real `ssh -A jump` forwards there, speaks raw agent protocol
// to it. Each test mounts one attack against real sshd hosts and checks
// what the attacker gets (nothing the policy does not allow), that the
// audit log names the attempt, and that the user's own use of the agent
// keeps working. Helpers are in adversary_helpers_test.go.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// advAllowPolicy lets every key log in to jump, and to target through
// jump, and nowhere else.
const advAllowPolicy = `[[key]]
match = "*"
allow = ["jump", "jump>target"]
confirm = "never"
max_forward_depth = 1
`

// hostboundRefusal is what a refusal of a plain publickey login through a
// forwarded agent must say.
var hostboundRefusal = regexp.MustCompile(`(?i)host-?bound`)

// The critical hole: root on jump opens its own SSH session to a denied
// host, binds jump's own host key to that session's id (is_forwarding=0)
// and asks for a plain publickey signature, which the denied host
// accepts because it does not name the server. The target accepts plain
// publickey logins, so this test fails if the agent ever stops requiring
// hostbound logins through a forwarded agent.
func TestAdversaryNotHostboundLogin(t *testing.T) {
	t.Run("allow list", func(t *testing.T) {
		s := newAdvSetup(t, advAllowPolicy)
		from := len(readAudit(t, s.a.Audit))
		out, sg, err := notHostboundAttack(t, s.n, s.fwdSock, s.hosts["jump"], s.userPub, "other")
		if err == nil {
			t.Errorf("root on jump logged in to other, which the policy denies, with a plain publickey signature: %q", out)
		}
		s.checkAttackRecord(t, sg, from, func(r audit.Record) {
			if r.Rule != `key "*" allow` {
				t.Errorf("refusal rule %q, want the allow list's: key \"*\" allow", r.Rule)
			}
		})
		s.localUse(t, "jump")

		t.Run("OpenSSH ssh-agent control", func(t *testing.T) {
			// The same attack against OpenSSH's agent with a key added
			// by plain ssh-add logs in: the harness really mounts it.
			env := openSSHAgent(t, s.a.Home, s.key+".moved")
			sock := forwardedSocket(t, s.n, env)
			out, sg, err := notHostboundAttack(t, s.n, sock, s.hosts["jump"], s.userPub, "other")
			if err != nil || !strings.Contains(out, "reached-other") {
				t.Fatalf("the attack did not log in to other through OpenSSH's ssh-agent (bind %v, sign %v): %v %q",
					sg.bindErr, sg.signErr, err, out)
			}
		})
	})

	t.Run("unknown destination asks", func(t *testing.T) {
		f := newFakeAskpass(t)
		f.answer("no")
		s := newAdvSetup(t, fmt.Sprintf("prompt = %q\nconfirm_timeout = \"5s\"\n[defaults]\nconfirm = \"never\"\nmax_forward_depth = 1\n", f.Path))
		from := len(readAudit(t, s.a.Audit))
		out, sg, err := notHostboundAttack(t, s.n, s.fwdSock, s.hosts["jump"], s.userPub, "other")
		if err == nil {
			t.Errorf("root on jump logged in to other with a plain publickey signature and no question asked: %q", out)
		}
		s.checkAttackRecord(t, sg, from, func(r audit.Record) {
			if r.Rule != "unknown_destination" {
				t.Errorf("refusal rule %q, want unknown_destination", r.Rule)
			}
			if r.Prompt == nil || r.Prompt.Outcome != audit.PromptNo {
				t.Errorf("record's prompt %+v, want the person's no", r.Prompt)
			}
		})
		prompts := f.prompts()
		if len(prompts) != 1 {
			t.Fatalf("%d prompts, want 1 (for the attack): %q", len(prompts), prompts)
		}
		t.Logf("prompt:\n%s", prompts[0])
		checkPromptNotJump(t, prompts[0])
		// Honest hostbound logins through jump ask nothing.
		s.mustReach("jump", "target")
		if n := len(f.prompts()); n != 1 {
			t.Errorf("an honest ssh -A jump 'ssh target' asked (%d prompts)", n)
		}
		s.localUse(t, "target")
	})
}

// checkAttackRecord checks the agent's side of a not-hostbound attack: it
// was asked (the bind for jump was accepted, as it is for an honest ssh
// on jump), refused the signature, and recorded the refusal.
func (s *advSetup) checkAttackRecord(t *testing.T, sg *rebindingSigner, from int, more func(audit.Record)) {
	t.Helper()
	if sg.bindErr != nil {
		t.Fatalf("the bind for jump's own session was refused (%v): an honest `ssh jump` from jump sends the same, and the attack never reached the sign step", sg.bindErr)
	}
	if sg.data == nil {
		t.Fatal("the attacker's login never asked the agent for a signature")
	}
	if sg.signErr == nil {
		t.Error("the agent signed the plain publickey login")
	}
	rec, ok := signRecordFor(readAudit(t, s.a.Audit)[from:], sg.data)
	if !ok {
		t.Fatal("no audit record of the attacker's sign request")
	}
	t.Logf("audit: %s; reason: %s", describe(rec), rec.Reason)
	if rec.Decision != "denied" || rec.Purpose.Kind != audit.PurposeLogin || rec.Purpose.User != currentUser(t) {
		t.Errorf("attack record %s, want a denied login as %s", describe(rec), currentUser(t))
	}
	if !throughJump(rec) {
		t.Errorf("attack record path %+v does not start at jump (forwarded)", rec.Path)
	}
	if !hostboundRefusal.MatchString(rec.Reason) {
		t.Errorf("refusal reason does not say the login is not host-bound: %q", rec.Reason)
	}
	more(rec)
}

// checkPromptNotJump fails if a prompt names jump as where the login goes.
func checkPromptNotJump(t *testing.T, prompt string) {
	t.Helper()
	for _, l := range strings.Split(prompt, "\n") {
		switch {
		case strings.HasPrefix(l, "To: ") && strings.Contains(l, " on jump"):
			t.Errorf("prompt names jump as the destination: %q\n%s", l, prompt)
		case strings.HasPrefix(l, "Path: ") && strings.HasSuffix(l, "→ jump"):
			t.Errorf("prompt's path ends at jump: %q\n%s", l, prompt)
		}
	}
}

// openSSHAgent starts OpenSSH's ssh-agent with key added by plain ssh-add
// and returns an environment that uses it.
func openSSHAgent(t *testing.T, home, key string) []string {
	t.Helper()
	bin := need(t, "ssh-agent", "openssh-client")
	sock := filepath.Join(shortTempDir(t), "openssh-agent.sock")
	cmd := exec.Command(bin, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "SSH_AUTH_SOCK=" + sock, "LANG=C.UTF-8"}
	if out, code := runEnv(t, env, "", "ssh-add", key); code != 0 {
		t.Fatalf("ssh-add to OpenSSH's agent: exit %d\n%s", code, out)
	}
	return env
}

// Honest OpenSSH clients through jump: a hostbound forwarded login on an
// allowed path works; for a host the policy does not allow, ssh on jump
// binds the host, then finds the key hidden, and that refusal is recorded.
func TestAdversaryHonestForwarding(t *testing.T) {
	s := newDestSetup(t, advAllowPolicy)
	s.mustReach("jump", "target")
	s.mustNotReach("jump", "other")
	var got []string
	for _, r := range readAudit(t, s.a.Audit) {
		if throughJump(r) && (r.Event == audit.EventSign || r.Decision == "denied") {
			got = append(got, describe(r))
			if r.Key == nil || r.Key.Comment != "user" {
				t.Errorf("record %s names key %+v, want \"user\"", describe(r), r.Key)
			}
		}
	}
	want := []string{
		`sign allowed login as ` + currentUser(t) + ` path=jump(fwd)>target rule=key "*" allow[1]`,
		`list denied path=jump(fwd)>other rule=key "*" allow`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("forwarded records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Crafted session-binds: each is refused, leaves a bind-failed record,
// and the connection signs nothing afterwards, not even what the policy
// allows on it.
func TestAdversaryCraftedBinds(t *testing.T) {
	s := newAdvSetup(t, advAllowPolicy)
	jump, target, other := s.hosts["jump"], s.hosts["target"], s.hosts["other"]
	fwdBind := func(t *testing.T, hk ssh.Signer, sid []byte) []byte {
		return bindPayload(t, hk.PublicKey(), hk, sid, true)
	}

	// Control: on a fresh forwarded connection, a bound hostbound login
	// to target (the path the policy allows) is signed.
	ag := dialFwd(t, s.fwdSock)
	if bindErr, signErr := s.boundLogin(t, ag, "target"); bindErr != nil || signErr != nil {
		t.Fatalf("control: a bound login jump→target on a forwarded connection: bind %v, sign %v", bindErr, signErr)
	}

	cases := []struct {
		name string
		// binds sends the crafted binds; all but the last must succeed
		// (it fails the test otherwise) and it returns the last one's error.
		binds func(t *testing.T, ag sshagent.ExtendedAgent) error
	}{
		{"bad signature", func(t *testing.T, ag sshagent.ExtendedAgent) error {
			return sendBind(ag, bindPayload(t, jump.PublicKey(), other, randomSID(t), true))
		}},
		{"session id bound to another host", func(t *testing.T, ag sshagent.ExtendedAgent) error {
			sid := randomSID(t)
			mustBind(t, ag, fwdBind(t, jump, sid))
			return sendBind(ag, fwdBind(t, other, sid))
		}},
		{"bind after a login bind", func(t *testing.T, ag sshagent.ExtendedAgent) error {
			mustBind(t, ag, bindPayload(t, target.PublicKey(), target, randomSID(t), false))
			return sendBind(ag, fwdBind(t, other, randomSID(t)))
		}},
		{"17th bind", func(t *testing.T, ag sshagent.ExtendedAgent) error {
			// ssh's own bind for jump is the first of 16.
			for i := 0; i < 15; i++ {
				mustBind(t, ag, fwdBind(t, other, randomSID(t)))
			}
			return sendBind(ag, fwdBind(t, other, randomSID(t)))
		}},
		{"session id over 128 bytes", func(t *testing.T, ag sshagent.ExtendedAgent) error {
			sid := make([]byte, 129)
			copy(sid, randomSID(t))
			return sendBind(ag, fwdBind(t, jump, sid))
		}},
	}
	probe := s.startLocalProbe()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ag := dialFwd(t, s.fwdSock)
			from := len(readAudit(t, s.a.Audit))
			if err := tc.binds(t, ag); !errors.Is(err, sshagent.ErrExtensionUnsupported) {
				t.Fatalf("crafted bind answered %v, want SSH_AGENT_FAILURE", err)
			}
			failed := 0
			for _, r := range readAudit(t, s.a.Audit)[from:] {
				if r.Event == "bind-failed" && r.Decision == "denied" && r.Reason != "" && r.Client != nil {
					failed++
					t.Logf("audit: bind-failed: %s", r.Reason)
				}
			}
			if failed != 1 {
				t.Errorf("%d bind-failed records, want 1", failed)
			}
			if _, signErr := s.boundLogin(t, ag, "target"); signErr == nil {
				t.Error("after a failed bind, the connection signed a bound login to target")
			}
			if _, err := ag.Sign(s.userPub, []byte("opaque data")); err == nil {
				t.Error("after a failed bind, the connection signed opaque data")
			}
		})
	}
	probe.check(t)
	s.localUse(t, "jump")
	s.mustReach("jump", "target")
}

func mustBind(t *testing.T, ag sshagent.ExtendedAgent, payload []byte) {
	t.Helper()
	if err := sendBind(ag, payload); err != nil {
		t.Fatalf("a valid session-bind was refused: %v", err)
	}
}

// Crafted user names: a login whose user name is a terminal escape or
// holds a newline is refused (its session id is not the bound one); the
// audit record keeps the exact name in JSON, and the table escapes it so
// it cannot overwrite or forge a row.
func TestAdversaryCraftedUserNames(t *testing.T) {
	s := newAdvSetup(t, advAllowPolicy)
	ag := dialFwd(t, s.fwdSock)
	from := len(readAudit(t, s.a.Audit))
	users := []string{"\x1b[2K\rFORGED allowed", "a\nb"}
	for _, user := range users {
		data := loginData(randomSID(t), user, methodHostbound, s.userPub, s.hosts["jump"].PublicKey())
		if _, err := ag.Sign(s.userPub, data); err == nil {
			t.Errorf("signed a login as %q for a session nobody bound", user)
		}
		rec, ok := signRecordFor(readAudit(t, s.a.Audit)[from:], data)
		switch {
		case !ok:
			t.Errorf("no audit record of the login as %q", user)
		case rec.Decision != "denied" || rec.Purpose.Kind != audit.PurposeLogin || rec.Purpose.User != user:
			t.Errorf("record %s, user %q; want a denied login as %q", describe(rec), rec.Purpose.User, user)
		}
	}

	table, code := s.auditCLI(t, "-n", "0")
	if code != 0 {
		t.Fatalf("safe-agent audit: exit %d\n%s", code, table)
	}
	if strings.ContainsAny(table, "\x1b\r") {
		t.Errorf("safe-agent audit prints raw ESC or CR from a remote user name:\n%q", table)
	}
	js, code := s.auditCLI(t, "--json", "-n", "0")
	if code != 0 {
		t.Fatalf("safe-agent audit --json: exit %d\n%s", code, js)
	}
	recs := jsonRecords(t, js)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != len(recs)+1 {
		t.Errorf("the table has %d rows for %d records: a user name broke a line\n%s", len(lines)-1, len(recs), table)
	}
	row := regexp.MustCompile(`^\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  `) // SEQ, TIME
	for _, l := range lines[1:] {
		if strings.Contains(l, "FORGED") || strings.Contains(l, "log in as a") {
			t.Logf("table row: %s", l)
		}
		if !row.MatchString(l) {
			t.Errorf("table line is not a record row: %q", l)
		}
	}
	for _, user := range users {
		found := false
		for _, r := range recs {
			found = found || r.Purpose != nil && r.Purpose.User == user
		}
		if !found {
			t.Errorf("audit --json lost the exact user name %q", user)
		}
	}
	s.localUse(t, "jump")
}

// Floods: 20,000 lists on one forwarded connection and 2,000 forwarded
// connections must not turn into as many audit records (rotation would
// then delete the attack's trace); the log still verifies and the user's
// ssh-add -l keeps working throughout.
func TestAdversaryAuditFlood(t *testing.T) {
	s := newAdvSetup(t, advAllowPolicy)
	probe := s.startLocalProbe()

	const lists = 20000
	from := len(readAudit(t, s.a.Audit))
	c := dialFwdRaw(t, s.fwdSock)
	start := time.Now()
	if err := floodLists(c, lists); err != nil {
		t.Fatalf("list flood: %v", err)
	}
	took := time.Since(start)
	c.Close()
	recs := auditFrom(t, s.a.Audit, from)
	t.Logf("%d lists on one connection in %v: %d audit records", lists, took.Round(time.Millisecond), len(recs))
	if limit := min(1000, 100*(int(took.Seconds())+2)); len(recs) > limit {
		t.Errorf("%d lists on one forwarded connection wrote %d audit records, want at most %d", lists, len(recs), limit)
	}
	if countRecords(recs, func(r audit.Record) bool { return r.Event == audit.EventList && throughJump(r) }) == 0 {
		t.Error("no audit record names the list flood through jump")
	}

	const conns, perConn, parallel = 2000, 5, 16
	from += len(recs)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start = time.Now()
	for i := 0; i < conns; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := listOnNewConn(s.fwdSock, perConn); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	took = time.Since(start)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d forwarded connections failed, first: %v", n, conns, firstErr.Load())
	}
	recs = auditFrom(t, s.a.Audit, from)
	t.Logf("%d forwarded connections × %d lists in %v: %d audit records", conns, perConn, took.Round(time.Millisecond), len(recs))
	// One origin's budget: 200 at once, then 20 a second, plus at most
	// one rate-limited summary a second.
	if limit := 200 + 21*(int(took.Seconds())+2); len(recs) > limit {
		t.Errorf("%d connections × %d lists wrote %d audit records, want at most %d (one budget for all connections through jump)", conns, perConn, len(recs), limit)
	}
	if countRecords(recs, func(r audit.Record) bool { return r.Event == "rate-limited" }) == 0 {
		t.Error("no rate-limited record counts what the budget refused")
	}
	if countRecords(recs, func(r audit.Record) bool { return r.Event == audit.EventList && throughJump(r) }) == 0 {
		t.Error("no audit record names the connection flood through jump")
	}

	probe.check(t)
	s.localUse(t, "jump")
	s.auditVerify(t)
}

// listOnNewConn opens one forwarded connection and lists n times on it.
func listOnNewConn(sock string, n int) error {
	c, err := dialUnix(sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return floodLists(c, n)
}

// Hidden keys: a forwarded list hides a key the path may not use, and
// that is a refusal like any other: one denied record per connection and
// key, naming the key and the rule, found by `audit --decision denied`.
func TestAdversaryHiddenKeys(t *testing.T) {
	s := newAdvSetup(t, `[defaults]
confirm = "never"
[[key]]
match = "user"
allow = ["jump", "jump>target"]
[[key]]
match = "hidden"
allow = ["other"]
`)
	hidden := newKey(t, t.TempDir(), "hidden", "ed25519", 0)
	s.a.mustRun("ssh-add", hidden)
	hiddenFP := ssh.FingerprintSHA256(readPub(t, hidden+".pub"))
	userFP := ssh.FingerprintSHA256(s.userPub)

	from := len(readAudit(t, s.a.Audit))
	listTwice := func() {
		ag := dialFwd(t, s.fwdSock)
		for i := 0; i < 2; i++ {
			keys, err := ag.List()
			if err != nil || len(keys) != 1 || keys[0].Comment != "user" {
				t.Fatalf("forwarded list: %v %v, want only the key \"user\"", keys, err)
			}
		}
	}
	deniedLists := func(fp string) (int, []audit.Record) {
		var recs []audit.Record
		for _, r := range auditFrom(t, s.a.Audit, from) {
			if r.Event == audit.EventList && r.Decision == "denied" && r.Key != nil && r.Key.Fingerprint == fp {
				recs = append(recs, r)
			}
		}
		return len(recs), recs
	}
	listTwice()
	n, recs := deniedLists(hiddenFP)
	if n != 1 {
		t.Fatalf("%d denied list records for the hidden key after two lists on one connection, want 1", n)
	}
	t.Logf("audit: %s; reason: %s", describe(recs[0]), recs[0].Reason)
	if recs[0].Rule != `key "hidden" allow` || !throughJump(recs[0]) {
		t.Errorf("hidden-key record %s, want rule key \"hidden\" allow on a path through jump", describe(recs[0]))
	}
	if n, _ := deniedLists(userFP); n != 0 {
		t.Errorf("%d denied list records for the key that was shown", n)
	}
	listTwice()
	if n, _ := deniedLists(hiddenFP); n != 2 {
		t.Errorf("%d denied list records for the hidden key after a second connection, want 2", n)
	}

	// The user's view: ssh -A jump 'ssh other' fails, and the audit says why.
	s.mustNotReach("jump", "other")
	out, code := s.auditCLI(t, "--decision", "denied")
	if code != 0 || !strings.Contains(out, "hidden") || !strings.Contains(out, `key "hidden" allow`) {
		t.Errorf("safe-agent audit --decision denied does not show the hidden key: exit %d\n%s", code, out)
	}
	s.localUse(t, "jump")
}
