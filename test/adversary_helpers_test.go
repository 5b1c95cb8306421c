package test

// The hostile jump host, as the attacker suite plays it: the test is root
// on "jump" (it owns jump's host key, like every host key of the test
// net) and holds the agent socket that a real `ssh -A jump` forwards
// there. Everything it sends travels through the user's real ssh client,
// which opens each forwarded channel with session-bind(jump,
// is_forwarding=1).

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

const extSessionBind = "session-bind@openssh.com"

// Login methods a client can sign (RFC 4252, OpenSSH PROTOCOL).
const (
	methodPublicKey = "publickey"
	methodHostbound = "publickey-hostbound-v00@openssh.com"
)

// advSetup is destSetup plus what root on jump holds: the host keys and
// the forwarded agent socket of a live `ssh -A jump` session.
type advSetup struct {
	*destSetup
	fwdSock string // the forwarded agent socket on jump
	userPub ssh.PublicKey
	hosts   map[string]ssh.Signer // host keys by host name
}

// newAdvSetup starts jump, target and other, an agent with policyBody
// and the key "user", and a `ssh -A jump` session whose forwarded
// socket the attacker then uses.
func newAdvSetup(t *testing.T, policyBody string) *advSetup {
	t.Helper()
	s := newDestSetup(t, policyBody)
	adv := &advSetup{destSetup: s, userPub: readPub(t, s.key+".pub"), hosts: map[string]ssh.Signer{}}
	for name := range s.n.Hosts {
		adv.hosts[name] = hostSigner(t, s.n, name)
	}
	adv.fwdSock = forwardedSocket(t, s.n, s.a.env())
	return adv
}

func readPub(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return pk
}

// hostSigner is a host's private host key: root on that host has it.
func hostSigner(t *testing.T, n *sshNet, name string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "hostkey_"+name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("host key of %s: %v", name, err)
	}
	return s
}

// forwardedSocket runs `ssh -A jump` with env (whose SSH_AUTH_SOCK is
// the agent under test) and returns the agent socket sshd created for
// that session on jump. The session lasts until the test ends: the
// remote shell waits on stdin, which the cleanup closes.
func forwardedSocket(t *testing.T, n *sshNet, env []string) string {
	t.Helper()
	cmd := exec.Command("ssh", "-F", n.Config, "-A", "jump", `echo "$SSH_AUTH_SOCK"; read -r _`)
	cmd.Env = env
	stderr := newSyncBuffer()
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh -A jump: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if !regexp.MustCompile(`^/tmp/ssh-[^/]+/agent\.\d+$`).MatchString(l) {
			t.Fatalf("ssh -A jump: SSH_AUTH_SOCK on jump is %q; ssh said:\n%s", l, stderr.String())
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("ssh -A jump printed no SSH_AUTH_SOCK; ssh said:\n%s", stderr.String())
	}
	return ""
}

// dialFwd opens a new connection on the forwarded socket: a new agent
// channel through the user's ssh, which binds it to jump first. The
// client reads every reply (x/crypto's client pipelines in a goroutine),
// so raw floods use dialFwdRaw instead.
func dialFwd(t *testing.T, sock string) sshagent.ExtendedAgent {
	t.Helper()
	return sshagent.NewClient(dialFwdRaw(t, sock)).(sshagent.ExtendedAgent)
}

// dialFwdRaw is dialFwd without an agent client.
func dialFwdRaw(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := dialUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendBind sends one session-bind@openssh.com; an SSH_AGENT_FAILURE
// reply is sshagent.ErrExtensionUnsupported.
func sendBind(ag sshagent.ExtendedAgent, payload []byte) error {
	_, err := ag.Extension(extSessionBind, payload)
	return err
}

func randomSID(t *testing.T) []byte {
	t.Helper()
	sid := make([]byte, 32)
	if _, err := rand.Read(sid); err != nil {
		t.Fatal(err)
	}
	return sid
}

// loginWire is the data a publickey userauth signature covers (RFC 4252
// section 7; OpenSSH PROTOCOL for the hostbound method, which appends the
// server's host key).
type loginWire struct {
	SessionID  []byte
	Type       byte // SSH_MSG_USERAUTH_REQUEST
	User       string
	Service    string
	Method     string
	SigFollows bool
	Alg        string
	KeyBlob    []byte
	Rest       []byte `ssh:"rest"`
}

// loginData builds the data of a login signature; hostKey is appended
// for the hostbound method only.
func loginData(sid []byte, user, method string, userKey, hostKey ssh.PublicKey) []byte {
	w := loginWire{SessionID: sid, Type: 50, User: user, Service: "ssh-connection", Method: method,
		SigFollows: true, Alg: userKey.Type(), KeyBlob: userKey.Marshal()}
	if method == methodHostbound {
		w.Rest = ssh.Marshal(struct{ HostKey []byte }{hostKey.Marshal()})
	}
	return ssh.Marshal(&w)
}

// boundLogin is what ssh on jump does for a login to host: bind the
// host's key to a session id (is_forwarding=0), then ask for a hostbound
// signature over that session. It returns the bind's and the sign's errors.
func (s *advSetup) boundLogin(t *testing.T, ag sshagent.ExtendedAgent, host string) (bindErr, signErr error) {
	t.Helper()
	hk := s.hosts[host]
	sid := randomSID(t)
	bindErr = sendBind(ag, bindPayload(t, hk.PublicKey(), hk, sid, false))
	_, signErr = ag.Sign(s.userPub, loginData(sid, currentUser(t), methodHostbound, s.userPub, hk.PublicKey()))
	return bindErr, signErr
}

// rebindingSigner is the attacker's key for its own SSH login: for each
// signature the server asks for, it binds jump's host key to the real
// session id on the forwarded agent connection (is_forwarding=0), which
// root on jump can sign, then asks that same connection to sign. The
// login method is plain "publickey", which does not name the server.
type rebindingSigner struct {
	t       *testing.T
	ag      sshagent.ExtendedAgent
	pub     ssh.PublicKey
	jump    ssh.Signer
	bindErr error
	signErr error
	data    []byte // the data the agent was asked to sign
}

func (r *rebindingSigner) PublicKey() ssh.PublicKey { return r.pub }

func (r *rebindingSigner) Sign(_ io.Reader, data []byte) (*ssh.Signature, error) {
	var w loginWire
	if err := ssh.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("parse the login to sign: %w", err)
	}
	if err := sendBind(r.ag, bindPayload(r.t, r.jump.PublicKey(), r.jump, w.SessionID, false)); err != nil {
		r.bindErr = err
		return nil, fmt.Errorf("session-bind for jump refused: %w", err)
	}
	r.data = data
	sig, err := r.ag.Sign(r.pub, data)
	r.signErr = err
	return sig, err
}

// notHostboundAttack is the critical attack: through the forwarded socket
// sock, log in to host with the x/crypto client (plain publickey) and a
// rebindingSigner. It returns what the remote command printed (empty
// unless the login worked), the signer and the login's error.
func notHostboundAttack(t *testing.T, n *sshNet, sock string, jump ssh.Signer, userPub ssh.PublicKey, host string) (string, *rebindingSigner, error) {
	t.Helper()
	ag := dialFwd(t, sock)
	signer := &rebindingSigner{t: t, ag: ag, pub: userPub, jump: jump}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(n.Hosts[host].HostPub))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User:            currentUser(t),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostPub),
		Timeout:         10 * time.Second,
	}
	client, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.Hosts[host].Port), cfg)
	if err != nil {
		return "", signer, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", signer, fmt.Errorf("logged in, but no session: %w", err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput("echo reached-" + host)
	return string(out), signer, err
}

// auditFrom returns the audit records from index from on, once the log
// has stopped growing (records summarised at connection close come a
// little after the requests).
func auditFrom(t *testing.T, path string, from int) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for prev, stable := -1, 0; stable < 3; {
		time.Sleep(100 * time.Millisecond)
		recs = readAudit(t, path)
		if len(recs) == prev {
			stable++
		} else {
			prev, stable = len(recs), 0
		}
	}
	if from > len(recs) {
		t.Fatalf("audit log shrank from %d to %d records", from, len(recs))
	}
	return recs[from:]
}

// signRecordFor finds the sign record of the request over data.
func signRecordFor(recs []audit.Record, data []byte) (audit.Record, bool) {
	h := audit.DataHash(data)
	for _, r := range recs {
		if r.Event == "sign" && r.Purpose != nil && r.Purpose.DataSHA256 == h {
			return r, true
		}
	}
	return audit.Record{}, false
}

func countRecords(recs []audit.Record, keep func(audit.Record) bool) int {
	n := 0
	for _, r := range recs {
		if keep(r) {
			n++
		}
	}
	return n
}

// throughJump reports whether a record's path starts with jump, forwarded.
func throughJump(r audit.Record) bool {
	return len(r.Path) > 0 && r.Path[0].Forwarded && len(r.Path[0].Names) > 0 && r.Path[0].Names[0] == "jump"
}

// localUse checks that the user's own use of the agent still works:
// ssh-add -l lists the key and a direct login to host (one the policy
// allows from here) succeeds.
func (s *advSetup) localUse(t *testing.T, host string) {
	t.Helper()
	if out, code := s.a.run("ssh-add", "-l"); code != 0 || !strings.Contains(out, "(ED25519)") {
		t.Errorf("local ssh-add -l: exit %d\n%s", code, out)
	}
	if out, code := s.n.ssh(s.a, host, "echo", "local-ok"); code != 0 || !strings.Contains(out, "local-ok") {
		t.Errorf("local ssh %s: exit %d\n%s", host, code, out)
	}
}

// localProbe runs ssh-add -l against the agent every 50 ms while an
// attack goes on: the user's own use must keep working throughout.
type localProbe struct {
	stop chan struct{}
	done chan struct{}
	ok   int
	fail error
}

func (s *advSetup) startLocalProbe() *localProbe {
	p := &localProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			cmd := exec.Command("ssh-add", "-l")
			cmd.Env = s.a.env()
			out, err := cmd.CombinedOutput()
			switch {
			case err == nil && strings.Contains(string(out), "(ED25519)"):
				p.ok++
			case p.fail == nil:
				p.fail = fmt.Errorf("ssh-add -l during the attack: %v\n%s", err, out)
			}
		}
	}()
	return p
}

// check stops the probe and fails the test unless every run worked.
func (p *localProbe) check(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	if p.fail != nil {
		t.Error(p.fail)
	}
	if p.ok == 0 {
		t.Error("local ssh-add -l never ran during the attack")
	}
	t.Logf("local ssh-add -l worked %d times during the attack", p.ok)
}

// auditCLI runs `safe-agent audit ARGS` on the agent's log.
func (s *advSetup) auditCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runEnv(t, s.a.env(), "", agentBin(), append([]string{"audit", "--audit-log", s.a.Audit}, args...)...)
}

// auditVerify fails the test unless `safe-agent audit verify` passes.
func (s *advSetup) auditVerify(t *testing.T) {
	t.Helper()
	out, code := runEnv(t, s.a.env(), "", agentBin(), "audit", "verify", "--audit-log", s.a.Audit)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: exit %d\n%s", code, out)
	}
}

// jsonRecords decodes `safe-agent audit --json` output.
func jsonRecords(t *testing.T, out string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r audit.Record
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("audit --json output: %v\n%s", err, out)
		}
		recs = append(recs, r)
	}
}

// Raw agent frames, for floods: the request is built with ssh.Marshal (a
// string is a uint32 length and the bytes, which is an agent frame).
const (
	agentcRequestIdentities = 11
	agentIdentitiesAnswer   = 12
)

func listFrame() []byte {
	return ssh.Marshal(struct{ Body []byte }{[]byte{agentcRequestIdentities}})
}

// readReplyType reads one reply frame and returns its message type.
func readReplyType(r io.Reader) (byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > 256*1024 {
		return 0, fmt.Errorf("reply frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	return body[0], nil
}

// floodLists sends count list requests on c without waiting for replies
// (a hostile client pipelines), then reads every reply.
func floodLists(c net.Conn, count int) error {
	// A stalled agent fails the test instead of hanging it.
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c, 64*1024)
		frame := listFrame()
		for i := 0; i < count; i++ {
			if _, err := w.Write(frame); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.Flush()
	}()
	r := bufio.NewReaderSize(c, 64*1024)
	for i := 0; i < count; i++ {
		typ, err := readReplyType(r)
		if err != nil {
			return fmt.Errorf("reply %d of %d: %w", i+1, count, err)
		}
		if typ != agentIdentitiesAnswer {
			return fmt.Errorf("reply %d of %d has type %d, want %d", i+1, count, typ, agentIdentitiesAnswer)
		}
	}
	return <-werr
}

func dialUnix(sock string) (net.Conn, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("dial the forwarded agent on jump: %w", err)
	}
	return c, nil
}
