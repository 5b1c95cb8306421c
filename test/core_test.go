package test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// noConfirm lets forwarded use through without a prompt, for tests of
// the protocol rather than of the policy.
const noConfirm = "[defaults]\nconfirm = \"never\"\nmax_forward_depth = 2\n"

func TestSSHAddLifecycle(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	a := startAgent(t, agentOpts{})
	out, code := a.run("ssh-add", "-l")
	if code != 1 || !strings.Contains(out, "The agent has no identities.") {
		t.Fatalf("ssh-add -l on empty agent: exit %d %q, want 1 and 'The agent has no identities.'", code, out)
	}
	dir := t.TempDir()
	var keys []string
	for _, kt := range keyTypes {
		k := newKey(t, dir, kt.name, kt.typ, kt.bits)
		keys = append(keys, k)
		out := a.mustRun("ssh-add", k)
		if !strings.Contains(out, "Identity added: "+k) {
			t.Errorf("ssh-add %s: %q", kt.name, out)
		}
	}
	list := a.mustRun("ssh-add", "-l")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != len(keys) {
		t.Fatalf("ssh-add -l shows %d keys, want %d:\n%s", len(lines), len(keys), list)
	}
	for i, k := range keys {
		fp, _ := runEnv(t, a.env(), "", "ssh-keygen", "-lf", k+".pub")
		if strings.TrimSpace(fp) != lines[i] {
			t.Errorf("ssh-add -l line %d = %q, want %q (same as ssh-keygen -lf, in order added)", i, lines[i], strings.TrimSpace(fp))
		}
	}
	pubs := a.mustRun("ssh-add", "-L")
	for _, k := range keys {
		b, _ := os.ReadFile(k + ".pub")
		if !strings.Contains(pubs, strings.TrimSpace(string(b))) {
			t.Errorf("ssh-add -L lacks %s", k)
		}
	}
	// -d one key.
	out = a.mustRun("ssh-add", "-d", keys[1])
	if !strings.Contains(out, "Identity removed: "+keys[1]) {
		t.Errorf("ssh-add -d: %q", out)
	}
	if l := a.mustRun("ssh-add", "-l"); strings.Count(l, "\n") != len(keys)-1 || strings.Contains(l, "ecdsa256") {
		t.Errorf("after -d: %s", l)
	}
	// Removing a key that is not there fails, as with OpenSSH.
	if out, code := a.run("ssh-add", "-d", keys[1]); code == 0 {
		t.Errorf("ssh-add -d of a missing key succeeded: %s", out)
	}
	// -x / -X lock and unlock, passphrase through SSH_ASKPASS.
	askpass := filepath.Join(dir, "askpass")
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(askpass, []byte("#!/bin/sh\ncat "+passFile+"\n"), 0o755)
	os.WriteFile(passFile, []byte("hunter2\n"), 0o600)
	env := append(a.env(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:none")
	if out, code := runEnv(t, env, "", "ssh-add", "-x"); code != 0 || !strings.Contains(out, "Agent locked.") {
		t.Fatalf("ssh-add -x: exit %d %q", code, out)
	}
	out, code = a.run("ssh-add", "-l")
	if code != 1 || !strings.Contains(out, "The agent has no identities.") {
		t.Errorf("locked agent lists keys: exit %d %q", code, out)
	}
	if out, code := a.run("ssh-add", keys[1]); code == 0 {
		t.Errorf("locked agent accepted a key: %q", out)
	}
	os.WriteFile(passFile, []byte("wrong\n"), 0o600)
	start := time.Now()
	if out, code := runEnv(t, env, "", "ssh-add", "-X"); code == 0 {
		t.Fatalf("unlock with wrong passphrase succeeded: %q", out)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("wrong passphrase answered after %v: want OpenSSH's growing delay (>= 0.1 s)", d)
	}
	os.WriteFile(passFile, []byte("hunter2\n"), 0o600)
	if out, code := runEnv(t, env, "", "ssh-add", "-X"); code != 0 || !strings.Contains(out, "Agent unlocked.") {
		t.Fatalf("ssh-add -X: exit %d %q", code, out)
	}
	if l := a.mustRun("ssh-add", "-l"); strings.Count(l, "\n") != len(keys)-1 {
		t.Errorf("after unlock: %s", l)
	}
	// -D removes all.
	out = a.mustRun("ssh-add", "-D")
	if !strings.Contains(out, "All identities removed.") {
		t.Errorf("ssh-add -D: %q", out)
	}
	if _, code := a.run("ssh-add", "-l"); code != 1 {
		t.Errorf("keys left after -D")
	}
	// -t 2: the key is gone after its lifetime.
	out = a.mustRun("ssh-add", "-t", "2", keys[0])
	if !strings.Contains(out, "Lifetime set to 2 seconds") {
		t.Errorf("ssh-add -t 2: %q", out)
	}
	if _, code := a.run("ssh-add", "-l"); code != 0 {
		t.Fatal("key with lifetime not listed right after add")
	}
	deadline := time.Now().Add(3500 * time.Millisecond)
	for {
		if _, code := a.run("ssh-add", "-l"); code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key with 2 s lifetime still listed after 3.5 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSSHKeygenSignThroughAgent(t *testing.T) {
	need(t, "ssh-keygen", "openssh-client")
	a := startAgent(t, agentOpts{})
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg.txt")
	os.WriteFile(msg, []byte("release v1.0\n"), 0o644)
	for _, kt := range keyTypes {
		t.Run(kt.name, func(t *testing.T) {
			k := newKey(t, dir, kt.name, kt.typ, kt.bits)
			a.mustRun("ssh-add", k)
			// Only the public key beside the message: signing must go
			// through the agent.
			pubDir := filepath.Join(dir, "pub-"+kt.name)
			os.Mkdir(pubDir, 0o700)
			pub := filepath.Join(pubDir, "key.pub")
			b, _ := os.ReadFile(k + ".pub")
			os.WriteFile(pub, b, 0o644)
			os.Remove(k)
			m := filepath.Join(dir, kt.name+".txt")
			os.WriteFile(m, []byte("release v1.0\n"), 0o644)
			a.mustRun("ssh-keygen", "-Y", "sign", "-f", pub, "-n", "file", m)
			signers := filepath.Join(dir, kt.name+".allowed")
			os.WriteFile(signers, []byte("dev@example "+strings.TrimSpace(string(b))+"\n"), 0o644)
			out, code := runEnv(t, a.env(), "release v1.0\n", "ssh-keygen", "-Y", "verify", "-f", signers, "-I", "dev@example", "-n", "file", "-s", m+".sig")
			if code != 0 || !strings.Contains(out, `Good "file" signature for dev@example`) {
				t.Fatalf("verify: exit %d %q", code, out)
			}
		})
	}
}

func TestLoginThroughAgent(t *testing.T) {
	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{policy: n.policy(noConfirm)})
	dir := t.TempDir()
	for _, kt := range keyTypes {
		t.Run(kt.name, func(t *testing.T) {
			a.mustRun("ssh-add", "-D")
			k := newKey(t, dir, kt.name, kt.typ, kt.bits)
			n.authorize(k + ".pub")
			a.mustRun("ssh-add", k)
			os.Remove(k) // no private key file anywhere: only the agent can sign
			if out, code := n.ssh(a, "jump", "echo", "hello-from-jump"); code != 0 || !strings.Contains(out, "hello-from-jump") {
				t.Fatalf("ssh jump: exit %d\n%s", code, out)
			}
		})
	}
	t.Run("forwarded", func(t *testing.T) {
		out, code := n.ssh(a, "-A", "jump", n.sshCmd("target", "echo", "hello-from-target"))
		if code != 0 || !strings.Contains(out, "hello-from-target") {
			t.Fatalf("ssh -A jump 'ssh target': exit %d\n%s", code, out)
		}
		// Without -A the jump host cannot reach the agent.
		out, code = n.ssh(a, "jump", n.sshCmd("target", "true"))
		if code == 0 {
			t.Fatalf("ssh target from jump without forwarding succeeded: %s", out)
		}
	})
}

func TestRSASignatureAlgorithms(t *testing.T) {
	a := startAgent(t, agentOpts{})
	dir := t.TempDir()
	k := newKey(t, dir, "rsa", "rsa", 3072)
	a.mustRun("ssh-add", k)
	c := sshagent.NewClient(a.rawConn()).(sshagent.ExtendedAgent)
	keys, err := c.List()
	if err != nil || len(keys) != 1 {
		t.Fatalf("list: %v %v", keys, err)
	}
	for _, tc := range []struct {
		flags sshagent.SignatureFlags
		want  string
	}{
		{0, ssh.KeyAlgoRSA},
		{sshagent.SignatureFlagRsaSha256, ssh.KeyAlgoRSASHA256},
		{sshagent.SignatureFlagRsaSha512, ssh.KeyAlgoRSASHA512},
	} {
		sig, err := c.SignWithFlags(keys[0], []byte("data"), tc.flags)
		if err != nil {
			t.Fatalf("sign flags %d: %v", tc.flags, err)
		}
		if sig.Format != tc.want {
			t.Errorf("flags %d: signature %s, want %s", tc.flags, sig.Format, tc.want)
		}
		if err := keys[0].Verify([]byte("data"), sig); err != nil {
			t.Errorf("flags %d: signature does not verify: %v", tc.flags, err)
		}
	}
}

func TestConstraints(t *testing.T) {
	a := startAgent(t, agentOpts{})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	c := sshagent.NewClient(a.rawConn()).(sshagent.ExtendedAgent)
	err := c.Add(sshagent.AddedKey{PrivateKey: priv, Comment: "x", ConstraintExtensions: []sshagent.ConstraintExtension{{ExtensionName: "made-up@example.com", ExtensionDetails: []byte{1}}}})
	if err == nil {
		t.Fatal("add with an unknown constraint extension succeeded; OpenSSH refuses it")
	}
	if keys, _ := c.List(); len(keys) != 0 {
		t.Fatalf("key with unknown constraint was loaded")
	}
	// A confirm-constrained key is accepted and every signature refused
	// while no prompt can be shown.
	dir := t.TempDir()
	k := newKey(t, dir, "confirm", "ed25519", 0)
	out := a.mustRun("ssh-add", "-c", k)
	if !strings.Contains(out, "The user must confirm each use of the key") {
		t.Errorf("ssh-add -c: %q", out)
	}
	msg := filepath.Join(dir, "m")
	os.WriteFile(msg, []byte("x"), 0o644)
	pubDir := filepath.Join(dir, "p")
	os.Mkdir(pubDir, 0o700)
	b, _ := os.ReadFile(k + ".pub")
	os.WriteFile(filepath.Join(pubDir, "k.pub"), b, 0o644)
	out, code := a.run("ssh-keygen", "-Y", "sign", "-f", filepath.Join(pubDir, "k.pub"), "-n", "file", msg)
	if code == 0 || !strings.Contains(out, "agent refused operation") {
		t.Fatalf("confirm key signed without a prompt: exit %d %q", code, out)
	}
	if !strings.Contains(a.stderr.String(), "not confirmed (error: cannot ask: no display") {
		t.Errorf("no log line explains the refusal:\n%s", a.stderr.String())
	}
	// Unknown extension: FAILURE, and the agent keeps serving.
	if _, err := c.Extension("no-such-extension@example.com", []byte("x")); err != sshagent.ErrExtensionUnsupported {
		t.Errorf("unknown extension: %v, want SSH_AGENT_FAILURE", err)
	}
	if _, err := c.List(); err != nil {
		t.Errorf("agent stopped serving after an unknown extension: %v", err)
	}
}

// frame builds one agent protocol frame.
func frame(body []byte) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

// readReply reads one reply frame, or reports the connection closed.
func readReply(c net.Conn) (msgType byte, closed bool) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, true
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, body); err != nil || len(body) == 0 {
		return 0, true
	}
	return body[0], false
}

func TestBadInput(t *testing.T) {
	a := startAgent(t, agentOpts{})
	dir := t.TempDir()
	a.mustRun("ssh-add", newKey(t, dir, "k", "ed25519", 0))
	// A well-behaved client connected the whole time.
	good := sshagent.NewClient(a.rawConn())
	const failure, identities = 5, 12
	cases := []struct {
		name string
		send []byte
		want string // "failure", "closed", "failure-or-closed"
	}{
		{"truncated frame then close", frame([]byte{11})[:3], "closed"},
		{"frame over 256 KiB", append([]byte{0, 4, 0, 1}, make([]byte, 64)...), "closed"},
		{"unknown message type", frame([]byte{200, 1, 2, 3}), "failure"},
		{"sign request with truncated key blob", frame([]byte{13, 0, 0, 0, 50, 1}), "failure"},
		{"add identity garbage", frame([]byte{17, 0, 0, 0, 11, 's', 's', 'h'}), "failure"},
		{"remove with trailing garbage", frame(append(ssh.Marshal(struct{ B []byte }{[]byte("x")}), 0xff)), "failure"},
		{"zero-length frame", []byte{0, 0, 0, 0}, "closed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := a.rawConn()
			if tc.name == "remove with trailing garbage" {
				tc.send = frame(append([]byte{18}, tc.send[4:]...))
			}
			c.Write(tc.send)
			if tc.name == "truncated frame then close" {
				c.(*net.UnixConn).CloseWrite()
			}
			typ, closed := readReply(c)
			switch tc.want {
			case "closed":
				if !closed {
					t.Errorf("got reply %d, want the connection closed", typ)
				}
			case "failure":
				if closed || typ != failure {
					t.Errorf("got type %d closed=%v, want SSH_AGENT_FAILURE", typ, closed)
				}
			}
			if keys, err := good.List(); err != nil || len(keys) != 1 {
				t.Fatalf("the other client stopped working: %v %v", keys, err)
			}
		})
	}
	t.Run("garbage after a valid message", func(t *testing.T) {
		c := a.rawConn()
		c.Write(append(frame([]byte{11}), 0xde, 0xad, 0xbe, 0xef, 0x01))
		if typ, closed := readReply(c); closed || typ != identities {
			t.Fatalf("valid request before garbage: type %d closed %v", typ, closed)
		}
		// The garbage reads as a frame header of ~3.7 GB: closed.
		if typ, closed := readReply(c); !closed {
			t.Errorf("garbage answered with %d, want connection closed", typ)
		}
		if keys, err := good.List(); err != nil || len(keys) != 1 {
			t.Fatalf("the other client stopped working: %v %v", keys, err)
		}
	})
	t.Run("half a frame does not block others", func(t *testing.T) {
		c := a.rawConn()
		c.Write([]byte{0, 0, 0, 100, 11})
		for i := 0; i < 3; i++ {
			if _, err := good.List(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestOtherUserRefused(t *testing.T) {
	needRoot(t, "run a client as another user")
	setpriv := need(t, "setpriv", "util-linux")
	a := startAgent(t, agentOpts{})
	a.mustRun("ssh-add", newKey(t, t.TempDir(), "k", "ed25519", 0))
	user := unprivilegedUser(t)
	// Make the socket reachable by anyone, so only the uid check stands.
	for _, p := range []string{filepath.Dir(filepath.Dir(a.Socket)), filepath.Dir(a.Socket)} {
		os.Chmod(p, 0o711)
	}
	os.Chmod(a.Socket, 0o777)
	out, code := runEnv(t, a.env(), "", setpriv, "--reuid="+user, "--regid="+user, "--clear-groups", "ssh-add", "-l")
	// OpenSSH's own agent gives exactly this to another uid: the
	// connection is closed and ssh-add exits 1.
	if code == 0 || strings.Contains(out, "ED25519") {
		t.Fatalf("another user listed keys: exit %d %q", code, out)
	}
	if !strings.Contains(out, "communication with agent failed") {
		t.Errorf("other user's ssh-add said %q (exit %d)", out, code)
	}
	if !regexp.MustCompile(`connection refused: client runs as another user.*uid=\d+`).MatchString(a.stderr.String()) {
		t.Errorf("refusal not logged:\n%s", a.stderr.String())
	}
	if l := a.mustRun("ssh-add", "-l"); !strings.Contains(l, "ED25519") {
		t.Errorf("agent stopped serving its owner: %s", l)
	}
}

// unprivilegedUser creates (or reuses) a system user for tests.
func unprivilegedUser(t *testing.T) string {
	const name = "safeagent-test"
	if _, code := runEnv(t, os.Environ(), "", "id", name); code == 0 {
		return name
	}
	if _, err := os.Stat("/usr/sbin/useradd"); err == nil {
		if out, code := runEnv(t, os.Environ(), "", "/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name); code == 0 {
			return name
		} else {
			t.Logf("useradd: %s; using nobody", out)
		}
	}
	return "nobody"
}

func TestServeSocketRules(t *testing.T) {
	a := startAgent(t, agentOpts{})
	fi, err := os.Stat(a.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 (%v)", fi.Mode().Perm(), err)
	}
	di, _ := os.Stat(filepath.Dir(a.Socket))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v, want 0700", di.Mode().Perm())
	}
	// A second agent on the same socket refuses to start.
	out, code := runEnv(t, a.env(), "", agentBin(), "serve", "--keystore", "none", "--socket", a.Socket, "--audit-log", filepath.Join(t.TempDir(), "a.jsonl"))
	if code == 0 || !strings.Contains(out, "an agent is already running on "+a.Socket) {
		t.Errorf("second agent: exit %d %q", code, out)
	}
	// SIGTERM: exit 0, socket removed.
	a.stop()
	if code, ok := a.waitExit(time.Second); !ok || code != 0 {
		t.Errorf("agent exit after SIGTERM: %d (exited %v)", code, ok)
	}
	if _, err := os.Stat(a.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after SIGTERM: %v", err)
	}
	// A stale socket (no agent behind it) is replaced.
	l, err := net.Listen("unix", a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	b := startAgent(t, agentOpts{socket: a.Socket})
	if out, code := b.run("ssh-add", "-l"); code != 1 || !strings.Contains(out, "no identities") {
		t.Errorf("agent on a replaced stale socket: exit %d %q", code, out)
	}
	// A directory writable by others is refused.
	wdir := shortTempDir(t)
	os.Chmod(wdir, 0o777)
	out, code = runEnv(t, a.env(), "", agentBin(), "serve", "--keystore", "none", "--socket", filepath.Join(wdir, "s"), "--audit-log", filepath.Join(t.TempDir(), "a.jsonl"))
	if code == 0 || !strings.Contains(out, "is writable by others") {
		t.Errorf("world-writable dir: exit %d %q", code, out)
	}
}

func TestCertificateKeys(t *testing.T) {
	a := startAgent(t, agentOpts{})
	dir := t.TempDir()
	ca := newKey(t, dir, "ca", "ed25519", 0)
	for _, kt := range keyTypes {
		k := newKey(t, dir, "cert-"+kt.name, kt.typ, kt.bits)
		if out, code := runEnv(t, a.env(), "", "ssh-keygen", "-q", "-s", ca, "-I", "test-"+kt.name, "-n", "root,deploy", "-V", "+1h", k+".pub"); code != 0 {
			t.Fatalf("sign certificate: %s", out)
		}
		// ssh-add loads the key and, beside it, its certificate.
		out := a.mustRun("ssh-add", k)
		if !strings.Contains(out, "Certificate added: "+k+"-cert.pub") {
			t.Fatalf("ssh-add with a certificate: %q", out)
		}
	}
	list := a.mustRun("ssh-add", "-l")
	if n := strings.Count(list, "-CERT)"); n != len(keyTypes) {
		t.Fatalf("%d certificates listed, want %d:\n%s", n, len(keyTypes), list)
	}
	c := sshagent.NewClient(a.rawConn())
	keys, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	signed := 0
	for _, k := range keys {
		pk, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			t.Fatal(err)
		}
		cert, ok := pk.(*ssh.Certificate)
		if !ok {
			continue
		}
		sig, err := c.Sign(pk, []byte("data"))
		if err != nil {
			t.Fatalf("sign with certificate %s: %v", cert.KeyId, err)
		}
		if err := cert.Key.Verify([]byte("data"), sig); err != nil {
			t.Errorf("certificate %s: signature does not verify with the certified key: %v", cert.KeyId, err)
		}
		signed++
	}
	if signed != len(keyTypes) {
		t.Errorf("signed with %d certificates, want %d", signed, len(keyTypes))
	}
}

func TestLockUnlockCommands(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.mustRun("ssh-add", newKey(t, t.TempDir(), "k", "ed25519", 0))
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(askpass, []byte("#!/bin/sh\ncat "+passFile+"\n"), 0o755)
	run := func(pass string, args ...string) (string, int) {
		os.WriteFile(passFile, []byte(pass+"\n"), 0o600)
		cmd := exec.Command(agentBin(), args...)
		cmd.Env = append(a.env(), "SSH_ASKPASS="+askpass)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal: askpass answers
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	if out, code := run("s3cret", "lock"); code != 0 || !strings.Contains(out, "Agent locked.") {
		t.Fatalf("safe-agent lock: exit %d %q", code, out)
	}
	if out, code := a.run("ssh-add", "-l"); code != 1 || !strings.Contains(out, "no identities") {
		t.Errorf("locked agent lists keys: %q", out)
	}
	if out, code := run("wrong", "unlock"); code == 0 {
		t.Errorf("unlock with a wrong passphrase: %q", out)
	}
	if out, code := run("s3cret", "unlock"); code != 0 || !strings.Contains(out, "Agent unlocked.") {
		t.Fatalf("safe-agent unlock: exit %d %q", code, out)
	}
	if out := a.mustRun("ssh-add", "-l"); !strings.Contains(out, "ED25519") {
		t.Errorf("after unlock: %q", out)
	}
}
