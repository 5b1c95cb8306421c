package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
)

// The lockout tests: whoever holds a forwarded agent (or any one process)
// must not lock the user out of their own keys.

// hogEnv makes this test binary a connection hog instead of running tests
// (see init): the number of connections to open to $SSH_AUTH_SOCK. The
// forwarded-channel test runs it on the jump host, as root there would.
const hogEnv = "SAFE_AGENT_TEST_HOG"

func init() {
	if n := os.Getenv(hogEnv); n != "" {
		os.Exit(runHog(n))
	}
}

// runHog opens n connections to $SSH_AUTH_SOCK, asks each for the key
// list, prints "served=S refused=R" and holds them until stdin closes.
func runHog(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hog:", err)
		return 2
	}
	served, refused := hold(os.Getenv("SSH_AUTH_SOCK"), n)
	fmt.Printf("served=%d refused=%d\n", len(served), refused)
	_, _ = io.Copy(io.Discard, os.Stdin)
	closeAll(served)
	return 0
}

// heldConn is a connection with its one client (x/crypto's client reads
// replies on a goroutine of its own: a second client would steal them).
type heldConn struct {
	c  net.Conn
	ag sshagent.ExtendedAgent
}

// hold opens n connections to sock and lists keys on each; it returns
// the ones served and how many were refused (closed by the agent).
func hold(sock string, n int) (served []heldConn, refused int) {
	for range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			refused++
			continue
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		ag := sshagent.NewClient(c)
		if _, err := ag.List(); err != nil {
			c.Close()
			refused++
			continue
		}
		c.SetDeadline(time.Time{})
		served = append(served, heldConn{c, ag})
	}
	return served, refused
}

func closeAll(cs []heldConn) {
	for _, h := range cs {
		h.c.Close()
	}
}

// refusedRecords are the agent's connection-refused audit records.
func refusedRecords(t *testing.T, a *agentProc) []audit.Record {
	var out []audit.Record
	for _, r := range readAudit(t, a.Audit) {
		if r.Event == "connection-refused" {
			out = append(out, r)
		}
	}
	return out
}

// mustList runs `ssh-add -l` (a process of its own) and wants the key.
func mustList(t *testing.T, a *agentProc, comment, when string) {
	t.Helper()
	out, code := a.run("ssh-add", "-l")
	if code != 0 || !strings.Contains(out, comment) {
		t.Fatalf("ssh-add -l %s: exit %d\n%s\nagent log:\n%s", when, code, out, tail(a.stderr.String(), 2000))
	}
}

// TestLockoutConnectionHog: one process holding every connection it can
// get does not lock out `ssh-add -l`, which runs as a process of its own.
// With --max-connections 512 the hog gets 504 (the last 8 are kept for
// processes with no connection open); with the defaults it gets 1,024
// (the per-process cap). Refusals are logged and audited, a few lines for
// hundreds of refusals.
func TestLockoutConnectionHog(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	raiseNoFile(t, 8192)
	for _, tc := range []struct {
		name   string
		args   []string
		open   int
		served int
		reason string
	}{
		{"global cap with reserve", []string{"--max-connections", "512"}, 600, 504,
			"too many connections: the last 8 of 512 are kept for processes with no connection open, and this one has 504"},
		{"default per-process cap", nil, 1100, agent.DefaultMaxConnsPerProcess,
			"too many connections from this process (1024 open; limit 1024 per process)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, agentOpts{args: tc.args})
			dir := t.TempDir()
			a.mustRun("ssh-add", newKey(t, dir, "mine", "ed25519", 0))
			served, refused := hold(a.Socket, tc.open)
			defer closeAll(served)
			for i := range 3 {
				mustList(t, a, "mine", fmt.Sprintf("(%d) while one process holds %d connections", i+1, len(served)))
			}
			if len(served) != tc.served || refused != tc.open-tc.served {
				t.Fatalf("hog opened %d: %d served, %d refused; want %d served", tc.open, len(served), refused, tc.served)
			}
			// The hog's own connections still work.
			served[0].c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := served[0].ag.List(); err != nil {
				t.Fatalf("a held connection stopped working: %v", err)
			}
			recs := refusedRecords(t, a)
			if len(recs) == 0 || len(recs) > 3 {
				t.Fatalf("%d connection-refused records for %d refusals, want 1 to 3", len(recs), refused)
			}
			r := recs[0]
			if r.Decision != "denied" || r.Reason != tc.reason || r.Client == nil || r.Client.PID != os.Getpid() {
				t.Errorf("record: %s; want reason %q and client pid %d", describe(r), tc.reason, os.Getpid())
			}
			if n := strings.Count(a.stderr.String(), "connection refused: "+tc.reason); n < 1 || n > 3 {
				t.Errorf("%d log lines for %d refusals, want 1 to 3:\n%s", n, refused, tail(a.stderr.String(), 2000))
			}
		})
	}
}

// TestLockoutForwardedChannels: root on a jump host opens 300 agent
// channels through a real `ssh -A` session. Each becomes a connection
// from the user's own ssh, bound as forwarded through jump; the 257th and
// later are closed (the per-path cap), logged and audited with the path.
// Meanwhile the user's own `ssh-add -l` and a direct `ssh target` work,
// and once the channels are gone the path works again.
func TestLockoutForwardedChannels(t *testing.T) {
	raiseNoFile(t, 8192)
	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{policy: n.policy("")})
	dir := t.TempDir()
	k := newKey(t, dir, "mine", "ed25519", 0)
	a.mustRun("ssh-add", k)
	n.authorize(k + ".pub")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	const open = 300
	cmd := exec.Command("ssh", "-F", n.Config, "-A", "jump", fmt.Sprintf("env %s=%d %s", hogEnv, open, self))
	cmd.Env = a.env()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	finish := func() {
		once.Do(func() {
			stdin.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	defer finish()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case got := <-line:
		want := fmt.Sprintf("served=%d refused=%d", agent.DefaultMaxConnsPerPath, open-agent.DefaultMaxConnsPerPath)
		if got != want {
			t.Fatalf("hog on jump: %q, want %q\nssh stderr: %s\nagent log:\n%s", got, want, stderr.String(), tail(a.stderr.String(), 3000))
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("hog on jump did not report; ssh stderr: %s", stderr.String())
	}

	// While jump holds its 256: the user's own use.
	mustList(t, a, "mine", "while jump holds 256 forwarded channels")
	if out, code := n.ssh(a, "target", "echo reached"); code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("ssh target while jump holds 256 channels: exit %d\n%s", code, out)
	}
	jumpFP := hostKeyFingerprint(t, n.Hosts["jump"].HostPub)
	recs := refusedRecords(t, a)
	if len(recs) == 0 || len(recs) > 3 {
		t.Fatalf("%d connection-refused records for %d refusals, want 1 to 3", len(recs), open-agent.DefaultMaxConnsPerPath)
	}
	r := recs[0]
	wantReason := "too many connections through this forwarded path (256 open; limit 256 per path)"
	if r.Decision != "denied" || r.Reason != wantReason || len(r.Path) != 1 || r.Path[0].Fingerprint != jumpFP || !r.Path[0].Forwarded ||
		len(r.Path[0].Names) == 0 || r.Path[0].Names[0] != "jump" {
		t.Errorf("record: %s\nwant reason %q through jump (%s)", describe(r), wantReason, jumpFP)
	}
	if !strings.Contains(a.stderr.String(), "connection refused: "+wantReason) {
		t.Errorf("no log line for the refusal:\n%s", tail(a.stderr.String(), 2000))
	}

	// Channels gone: the path serves again.
	finish()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, code := n.ssh(a, "-A", "jump", "ssh-add -l")
		if code == 0 && strings.Contains(out, "mine") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh -A jump ssh-add -l after the hog left: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func hostKeyFingerprint(t *testing.T, line string) string {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(pub)
}

// TestLockoutIdleTimeout: with --idle-timeout 1s a connection that sends
// nothing is closed after a second, with a log line; one that sends a
// request every 300 ms stays open.
func TestLockoutIdleTimeout(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	a := startAgent(t, agentOpts{args: []string{"--idle-timeout", "1s"}})
	a.mustRun("ssh-add", newKey(t, t.TempDir(), "mine", "ed25519", 0))
	silent := a.rawConn()
	active := a.rawConn()
	activeAg := sshagent.NewClient(active)
	start := time.Now()
	for range 8 {
		active.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := activeAg.List(); err != nil {
			t.Fatalf("a connection used every 300ms was closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := silent.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection after %v: read %d, %v; want end-of-file", time.Since(start), n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("silent connection closed after %v, want about 1s", d)
	}
	waitLog(t, a, "connection closed: idle")
	if !strings.Contains(a.stderr.String(), "idle_for=1s") {
		t.Errorf("idle log line lacks the timeout:\n%s", tail(a.stderr.String(), 2000))
	}
	mustList(t, a, "mine", "after idle connections were closed")
}

// forwardedLogin is a raw client on a connection bound as a forwarded
// agent through a made-up jump host, asking for host-bound logins to a
// made-up target, as root on a jump host can.
type forwardedLogin struct {
	ag     sshagent.ExtendedAgent
	key    ssh.PublicKey
	target ssh.PublicKey
	sid    []byte
}

func newForwardedLogin(t *testing.T, a *agentProc, key ssh.PublicKey, jump ssh.Signer, n byte) *forwardedLogin {
	t.Helper()
	ag := sshagent.NewClient(a.rawConn()).(sshagent.ExtendedAgent)
	target := newHostSigner(t)
	jumpSID, sid := make([]byte, 32), make([]byte, 32)
	jumpSID[0], sid[0] = n, n+100
	for _, b := range [][]byte{
		bindPayload(t, jump.PublicKey(), jump, jumpSID, true),
		bindPayload(t, target.PublicKey(), target, sid, false),
	} {
		if _, err := ag.Extension("session-bind@openssh.com", b); err != nil {
			t.Fatalf("bind: %v", err)
		}
	}
	return &forwardedLogin{ag: ag, key: key, target: target.PublicKey(), sid: sid}
}

// login asks for a publickey-hostbound-v00@openssh.com signature.
func (f *forwardedLogin) login(user string) error {
	data := ssh.Marshal(struct {
		SessionID []byte
		Type      byte
		User      string
		Service   string
		Method    string
		HasSig    bool
		Algo      string
		Key       []byte
		HostKey   []byte
	}{f.sid, 50, user, "ssh-connection", "publickey-hostbound-v00@openssh.com", true, f.key.Type(), f.key.Marshal(), f.target.Marshal()})
	_, err := f.ag.Sign(f.key, data)
	return err
}

// TestLockoutLocalPromptFirst: a local `ssh-keygen -Y sign` asked while a
// forwarded login waits for its prompt is asked first; a second forwarded
// request through the same path is refused at once, not queued, with the
// reason in the audit log.
func TestLockoutLocalPromptFirst(t *testing.T) {
	need(t, "ssh-keygen", "openssh-client")
	f := newFakeAskpass(t)
	f.answer("yes")
	f.delay("2")
	s := newSignSetup(t, fmt.Sprintf("prompt = %q\nconfirm_timeout = \"20s\"\n[defaults]\nconfirm = \"always\"\n", f.Path))
	b, err := os.ReadFile(s.pub)
	if err != nil {
		t.Fatal(err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	jump := newHostSigner(t)

	// 1. A local signature: its prompt shows for 2 s.
	var wg sync.WaitGroup
	results := map[string]bool{}
	var mu sync.Mutex
	run := func(name string, fn func() bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := fn()
			mu.Lock()
			results[name] = ok
			mu.Unlock()
		}()
	}
	run("first", func() bool { return s.sign(t, "file", "first") })
	waitFor(t, "the first prompt", func() bool { return len(f.prompts()) == 1 })

	// 2. A forwarded login queues behind it.
	fwd := newForwardedLogin(t, s.a, key, jump, 1)
	run("forwarded", func() bool { return fwd.login("deploy") == nil })
	time.Sleep(300 * time.Millisecond)

	// 3. Another forwarded login through the same path: refused at once.
	start := time.Now()
	if err := newForwardedLogin(t, s.a, key, jump, 2).login("other"); err == nil {
		t.Fatal("a second forwarded request on a path with a prompt waiting was signed")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the second forwarded request waited %v: it must be refused at once", d)
	}

	// 4. A local request after both: asked before the forwarded one.
	run("local", func() bool { return s.sign(t, "git", "local") })
	wg.Wait()

	p := f.prompts()
	if len(p) != 3 {
		t.Fatalf("%d prompts, want 3:\n%s", len(p), strings.Join(p, "\n---\n"))
	}
	for i, want := range []string{"sign a file", "sign a git", "log in as deploy on"} {
		if !strings.Contains(p[i], want) {
			t.Errorf("prompt %d is not the %q one:\n%s", i+1, want, p[i])
		}
	}
	for _, name := range []string{"first", "forwarded", "local"} {
		if !results[name] {
			t.Errorf("%s request was not signed after a yes", name)
		}
	}
	var busy []audit.Record
	for _, r := range readAudit(t, s.a.Audit) {
		if r.Event == "sign" && strings.Contains(r.Reason, "a prompt for this path is already waiting") {
			busy = append(busy, r)
		}
	}
	if len(busy) != 1 || busy[0].Decision != "denied" || busy[0].Purpose == nil || busy[0].Purpose.User != "other" {
		t.Errorf("audit records of the refused forwarded request: %d, want 1 denied for user other", len(busy))
		for _, r := range busy {
			t.Log(describe(r))
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
