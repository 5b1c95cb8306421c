package test

// Certificates against the clock and the policy: a certificate leaves the
// agent at its ValidBefore (log, audit and a desktop notification say so),
// and [[key]] rules select certificates by the CA that signed them and by
// principal, with the certificate in the agent or presented as a file.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// notifyBus is a private session bus with dunst as the notification
// server, and a dbus-monitor that records every Notify call on it.
type notifyBus struct {
	env  []string // DISPLAY and DBUS_SESSION_BUS_ADDRESS for the agent
	mu   sync.Mutex
	seen strings.Builder
}

// newNotifyBus starts Xvfb, a session bus, dunst and dbus-monitor, as
// TestRefusalNotification does, so notifications reach a real server.
func newNotifyBus(t *testing.T) *notifyBus {
	t.Helper()
	need(t, "dbus-run-session", "dbus")
	need(t, "dunst", "dunst")
	need(t, "dbus-monitor", "dbus")
	display := startXvfb(t)
	addrFile := filepath.Join(shortTempDir(t), "bus")
	bus := exec.Command("dbus-run-session", "--", "sh", "-c", `echo "$DBUS_SESSION_BUS_ADDRESS" > `+addrFile+`; exec sleep 600`)
	bus.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := bus.Start(); err != nil {
		t.Fatalf("start dbus-run-session: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-bus.Process.Pid, syscall.SIGKILL); _ = bus.Wait() })
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
	}
	if addr == "" {
		t.Fatal("dbus-run-session did not start")
	}
	nb := &notifyBus{env: []string{"DISPLAY=" + display, "DBUS_SESSION_BUS_ADDRESS=" + addr}}
	env := append(os.Environ(), nb.env...)
	dunst := exec.Command("dunst")
	dunst.Env = env
	dunst.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dunst.Start(); err != nil {
		t.Fatalf("start dunst: %v", err)
	}
	t.Cleanup(func() { _ = dunst.Process.Kill(); _ = dunst.Wait() })
	ctx, cancel := context.WithCancel(context.Background())
	mon := exec.CommandContext(ctx, "dbus-monitor", "--session", "interface='org.freedesktop.Notifications'")
	mon.Env = env
	stdout, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatalf("start dbus-monitor: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = mon.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			nb.mu.Lock()
			nb.seen.WriteString(sc.Text() + "\n")
			nb.mu.Unlock()
		}
	}()
	// dbus-monitor prints its own NameAcquired signal once it is on the
	// bus; its match rule is in place by then.
	time.Sleep(300 * time.Millisecond)
	return nb
}

func (nb *notifyBus) text() string {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.seen.String()
}

// waitNotify waits for a Notify call whose text holds every want and
// returns what the monitor saw.
func (nb *notifyBus) waitNotify(t *testing.T, d time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := nb.text()
		ok := strings.Contains(s, "member=Notify")
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Notify call with %q seen on the bus:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readCert parses an OpenSSH certificate file.
func readCert(t *testing.T, file string) *ssh.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s is not a certificate", file)
	}
	return c
}

// TestCertExpiresAtValidBefore: a certificate valid for 3 seconds logs in
// at once; at its ValidBefore the agent drops it, says so in its log, its
// audit log and a desktop notification, and the next login fails the way
// the server would have refused it anyway, without the agent signing.
func TestCertExpiresAtValidBefore(t *testing.T) {
	nb := newNotifyBus(t)
	caDir := t.TempDir()
	ca := newUserCA(t, caDir, "user_ca")
	if err := os.Chmod(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := newSSHNetWith(t, sshNetOpts{UserCA: ca.Pub}, "target")
	a := startAgent(t, agentOpts{policy: n.policy(certPolicy), env: nb.env})
	key := newKey(t, t.TempDir(), "short-lived", "ed25519", 0)

	// Everything slow is set up; the seconds start here. ssh-keygen counts
	// them from the current whole second, so 2 to 3 of 3 are left. On a
	// machine so loaded that the login outlasts them, try again with a
	// longer certificate rather than fail on the machine's speed.
	var id string
	var vb time.Time
	var mark int
	for _, secs := range []int{3, 10, 30} {
		id = fmt.Sprintf("cert-%ds", secs)
		certFile := ca.sign(key+".pub", id, currentUser(t), fmt.Sprintf("-1m:+%ds", secs))
		vb = time.Unix(int64(readCert(t, certFile).ValidBefore), 0)
		a.mustRun("ssh-add", key)
		if l := a.mustRun("ssh-add", "-l"); !strings.Contains(l, "(ED25519-CERT)") {
			t.Fatalf("ssh-add %s did not add the certificate:\n%s", key, l)
		}
		mark = len(readAudit(t, a.Audit))
		out, code := n.ssh(a, "target", "echo reached-target")
		if code != 0 || !strings.Contains(out, "reached-target") {
			t.Fatalf("login with the fresh certificate failed (%s before its ValidBefore):\n%s", time.Until(vb).Round(time.Millisecond), out)
		}
		if time.Now().Before(vb) {
			break
		}
		t.Logf("the login ended after a %d-second certificate's ValidBefore (a loaded machine); trying a longer one", secs)
		waitGone := vb.Add(3 * time.Second)
		for time.Now().Before(waitGone) && strings.Contains(a.mustRun("ssh-add", "-l"), "-CERT") {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if time.Now().After(vb) {
		t.Fatalf("even a 30-second certificate expired before its first login ended")
	}
	if got := acceptedCerts(n, "target", id); got != 1 {
		t.Errorf("target accepted certificate %q %d times, want 1", id, got)
	}

	// Gone from the list at ValidBefore; the plain key stays.
	var listed string
	for deadline := vb.Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		listed, _ = a.run("ssh-add", "-l")
		if !strings.Contains(listed, "-CERT)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate still listed %s after its ValidBefore:\n%s", time.Since(vb).Round(time.Millisecond), listed)
		}
	}
	if gone := time.Now(); gone.Before(vb) {
		t.Errorf("certificate removed %s before its ValidBefore", vb.Sub(gone))
	}
	if !strings.Contains(listed, "(ED25519)") {
		t.Errorf("the plain key left the agent with its certificate:\n%s", listed)
	}

	// The removal is recorded with the reason, to the second.
	var removed []audit.Record
	for _, r := range auditFrom(t, a.Audit, mark) {
		if r.Event == "remove" {
			removed = append(removed, r)
		}
	}
	if len(removed) != 1 {
		t.Fatalf("%d remove records after expiry, want 1: %+v", len(removed), removed)
	}
	r := removed[0]
	if !strings.HasPrefix(r.Reason, fmt.Sprintf("certificate %q expired at ", id)) {
		t.Errorf("remove record reason %q, want certificate %q expired at …", r.Reason, id)
	}
	if r.Key == nil || r.Key.Cert == nil || r.Key.Cert.KeyID != id || r.Key.Cert.CAFingerprint != ca.FP || !r.Key.Cert.ValidBefore.Equal(vb) {
		t.Errorf("remove record does not name certificate %q of CA %s valid before %s: %+v", id, ca.FP, vb, r.Key)
	}
	late := r.Time.Sub(vb)
	if late < 0 || late >= time.Second {
		t.Errorf("certificate removed at %s, %s after its ValidBefore %s: want within the second", r.Time, late, vb)
	}
	t.Logf("certificate removed %s after its ValidBefore", late)
	waitLog(t, a, "certificate expired; removed from the agent")
	if log := a.stderr.String(); !strings.Contains(log, id) {
		t.Errorf("the agent's log does not name certificate %q:\n%s", id, log)
	}

	// The next login offers only the plain key, which target does not
	// accept: a refusal by the server, with no signature asked for.
	mark = len(readAudit(t, a.Audit))
	out, code := n.ssh(a, "target", "echo reached-target")
	if code == 0 || !strings.Contains(out, "Permission denied (publickey)") {
		t.Errorf("login after the certificate expired: exit %d, want Permission denied:\n%s", code, out)
	}
	if got := acceptedCerts(n, "target", id); got != 1 {
		t.Errorf("target accepted certificate %q %d times, want it only before expiry", id, got)
	}
	for _, r := range auditFrom(t, a.Audit, mark) {
		if r.Event == "sign" {
			t.Errorf("the agent signed or refused after expiry: %s (%s)", describe(r), r.Reason)
		}
	}

	seen := nb.waitNotify(t, 10*time.Second, fmt.Sprintf(`string "safe-agent: certificate %q expired"`, id))
	for _, want := range []string{"short-lived", fingerprintOf(t, key+".pub"), "Principals: " + currentUser(t)} {
		if !strings.Contains(seen, want) {
			t.Errorf("the expiry notification lacks %q:\n%s", want, seen)
		}
	}
}

// certUserWith is newCertUser for ed25519 with chosen principals (comma
// separated): the same two agents, key and certificate in one, the plain
// key in the other, and no private key file left.
func certUserWith(t *testing.T, n *sshNet, ca *userCA, id, principals, policy string) *certUser {
	t.Helper()
	return makeCertUser(t, ca, id, "ed25519", 0, id, principals, policy)
}

// certSigns is the agent's sign records of one login, described, after
// checking that each names certificate u.id.
func certSigns(t *testing.T, a *agentProc, mark int, u *certUser) []string {
	t.Helper()
	var got []string
	for _, r := range auditFrom(t, a.Audit, mark) {
		if r.Event != "sign" {
			continue
		}
		got = append(got, describe(r))
		if r.Key == nil || r.Key.Cert == nil || r.Key.Cert.KeyID != u.id {
			t.Errorf("sign record does not name certificate %q: %s key=%+v", u.id, describe(r), r.Key)
		}
		if r.Decision == "denied" && !strings.Contains(r.Reason, fmt.Sprintf("certificate %q", u.id)) {
			t.Errorf("the refusal does not name certificate %q: %s", u.id, r.Reason)
		}
	}
	return got
}

// hiddenFromList fails the test when a list through the forwarded agent
// hid a plain key although ssh had its certificate as a file (fileForm):
// ssh on the jump host then cannot offer the certificate at all. The plain
// key is rightly hidden when its certificate is in the agent.
func hiddenFromList(t *testing.T, a *agentProc, mark int, fileForm bool) {
	t.Helper()
	if !fileForm {
		return
	}
	for _, r := range auditFrom(t, a.Audit, mark) {
		if r.Event == "list" && r.Decision == "denied" {
			t.Errorf("the forwarded list hid the plain key whose certificate the login presents as a file (rule %s): %s", r.Rule, r.Reason)
		}
	}
}

// TestCertPolicyByCAAndPrincipal: with nothing allowed by default, a
// [[key]] rule that matches by CA, then one that matches by principal,
// lets exactly the matching certificate log in: held in the agent, or
// presented as a file while the agent holds only the plain key (the key is
// then matched through the certificate the login names), directly and
// through a forwarded agent.
func TestCertPolicyByCAAndPrincipal(t *testing.T) {
	caDir := t.TempDir()
	ca1, ca2 := newUserCA(t, caDir, "ca1"), newUserCA(t, caDir, "ca2")
	var both []byte
	for _, ca := range []*userCA{ca1, ca2} {
		b, err := os.ReadFile(ca.Pub)
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, b...)
	}
	trusted := filepath.Join(caDir, "trusted_user_ca_keys")
	if err := os.WriteFile(trusted, both, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := newSSHNetWith(t, sshNetOpts{UserCA: trusted}, "jump", "target")
	user := currentUser(t)
	// Every hop of a path must be allowed: "jump" and "jump>target" for
	// ssh -A jump ssh target, "target" for the direct login. The first
	// entry that matches the destination names the rule.
	policyFor := func(match string) string {
		return n.policy(fmt.Sprintf(`[defaults]
confirm = "never"
max_forward_depth = 1
allow = ["nowhere.invalid"]

[[key]]
match = %q
allow = ["jump", "jump>target", "target"]
`, match))
	}

	for _, tc := range []struct {
		name, match      string
		allowed, refused func(policy string) *certUser
	}{
		{
			name: "by-ca", match: "ca:" + ca1.FP,
			allowed: func(p string) *certUser { return certUserWith(t, n, ca1, "from-ca1", user, p) },
			refused: func(p string) *certUser { return certUserWith(t, n, ca2, "from-ca2", user, p) },
		},
		{
			// The login user is a principal of both: sshd needs it.
			name: "by-principal", match: "principal:deploy-*",
			allowed: func(p string) *certUser { return certUserWith(t, n, ca1, "deploy-eu", "deploy-eu,"+user, p) },
			refused: func(p string) *certUser { return certUserWith(t, n, ca1, "alice", "alice,"+user, p) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policyFor(tc.match)
			ok, no := tc.allowed(p), tc.refused(p)
			rule := fmt.Sprintf("key %q allow", tc.match)
			for _, f := range []struct {
				name     string
				a, aNo   *agentProc
				args, ar []string
			}{
				{"cert-in-agent", ok.inAgent, no.inAgent, nil, nil},
				{"cert-file", ok.keyOnly, no.keyOnly, ok.fileArgs(), no.fileArgs()},
			} {
				for _, jump := range []bool{false, true} {
					route, wantOK, wantNo := "direct", []string{"path=target rule=" + rule + "[2]"}, "path=target"
					if jump {
						route, wantOK, wantNo = "jump", []string{"path=jump rule=" + rule + "[0]", "path=jump(fwd)>target rule=" + rule + "[1]"}, "path=jump"
					}
					t.Run(f.name+"/"+route, func(t *testing.T) {
						mark, before := len(readAudit(t, f.a.Audit)), acceptedCerts(n, "target", ok.id)
						if out, reached := certLogin(t, n, f.a, jump, f.args); !reached {
							t.Errorf("certificate %q matched by %s: login failed:\n%s", ok.id, tc.match, out)
						}
						if got := acceptedCerts(n, "target", ok.id); got != before+1 {
							t.Errorf("target accepted certificate %q %d times, want 1", ok.id, got-before)
						}
						hiddenFromList(t, f.a, mark, f.args != nil)
						got := certSigns(t, f.a, mark, ok)
						var want []string
						for _, w := range wantOK {
							want = append(want, fmt.Sprintf("sign allowed login as %s %s", user, w))
						}
						if strings.Join(got, "\n") != strings.Join(want, "\n") {
							t.Errorf("sign records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
						}

						mark, before = len(readAudit(t, f.aNo.Audit)), acceptedCerts(n, "target", no.id)
						out, reached := certLogin(t, n, f.aNo, jump, f.ar)
						if reached || !strings.Contains(out, "agent refused operation") {
							t.Errorf("certificate %q, not matched by %s: reached=%v, want the agent to refuse:\n%s", no.id, tc.match, reached, out)
						}
						if got := acceptedCerts(n, "target", no.id); got != before {
							t.Errorf("target accepted certificate %q %d times, want 0", no.id, got-before)
						}
						got = certSigns(t, f.aNo, mark, no)
						wantRefused := fmt.Sprintf("sign denied login as %s %s rule=defaults allow", user, wantNo)
						if strings.Join(got, "\n") != wantRefused {
							t.Errorf("sign records:\n%s\nwant:\n%s", strings.Join(got, "\n"), wantRefused)
						}
					})
				}
			}
		})
	}
}
