package test

// Helpers for issue 16 (policy in front of upstream agents): a real
// OpenSSH ssh-agent as the upstream, a SoftHSM2 token behind it, a fake
// upstream that hangs, and the audit records as the JSON log has them.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// upstreamAgent is a real OpenSSH `ssh-agent -D -a SOCK`.
type upstreamAgent struct {
	t      *testing.T
	Socket string
	env    []string // extra environment (SOFTHSM2_CONF)
	cmd    *exec.Cmd
	done   chan struct{}
	out    *syncBuffer
}

// startUpstream runs ssh-agent on a fresh socket; env is added to its
// environment (the PKCS#11 helper it spawns reads SOFTHSM2_CONF).
func startUpstream(t *testing.T, env ...string) *upstreamAgent {
	t.Helper()
	need(t, "ssh-agent", "openssh-client")
	u := &upstreamAgent{t: t, Socket: filepath.Join(shortTempDir(t), "up.sock"), env: env}
	u.start()
	t.Cleanup(u.kill)
	return u
}

// start runs ssh-agent on u.Socket and waits until it accepts.
func (u *upstreamAgent) start() {
	u.t.Helper()
	u.out = newSyncBuffer()
	cmd := exec.Command("ssh-agent", "-D", "-a", u.Socket)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Dir(u.Socket), "LANG=C.UTF-8"}, u.env...)
	cmd.Stdout, cmd.Stderr = u.out, u.out
	if err := cmd.Start(); err != nil {
		u.t.Fatalf("start ssh-agent: %v", err)
	}
	u.cmd, u.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(u.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", u.Socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("ssh-agent -a %s did not start:\n%s", u.Socket, u.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends ssh-agent at once (SIGKILL: it cannot remove its socket, as
// after a crash).
func (u *upstreamAgent) kill() {
	if u.cmd == nil {
		return
	}
	_ = u.cmd.Process.Kill()
	<-u.done
	u.cmd = nil
}

// restart starts a new ssh-agent on the same path, as a user does after
// a crash: the stale socket file is removed first.
func (u *upstreamAgent) restart() {
	u.t.Helper()
	u.kill()
	if err := os.Remove(u.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		u.t.Fatal(err)
	}
	u.start()
}

// sshAddEnv is the environment of ssh-add run against the upstream only.
func (u *upstreamAgent) sshAddEnv() []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Dir(u.Socket), "SSH_AUTH_SOCK=" + u.Socket, "LANG=C.UTF-8"}, u.env...)
}

// add runs ssh-add ARGS against the upstream and fails the test on error.
func (u *upstreamAgent) add(args ...string) string {
	u.t.Helper()
	out, code := runEnv(u.t, u.sshAddEnv(), "", "ssh-add", args...)
	if code != 0 {
		u.t.Fatalf("SSH_AUTH_SOCK=upstream ssh-add %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// list is `ssh-add -l` against the upstream itself.
func (u *upstreamAgent) list() string {
	u.t.Helper()
	out, _ := runEnv(u.t, u.sshAddEnv(), "", "ssh-add", "-l")
	return out
}

// upKey is a key only an upstream agent holds: its private half is
// removed from disk once added, so only that agent can sign.
type upKey struct {
	Pub         string // public key file
	Fingerprint string // SHA256:…
	Comment     string
	priv        string // kept for tests that also add it to safe-agent
}

// newUpKey makes a key called name, authorizes it on every host of n,
// adds it to u with ssh-add ARGS (the key file appended) and moves the
// private half away.
func newUpKey(t *testing.T, n *sshNet, u *upstreamAgent, dir, name string, args ...string) upKey {
	t.Helper()
	key := newKey(t, dir, name, "ed25519", 0)
	n.authorize(key + ".pub")
	u.add(append(args, key)...)
	moved := key + ".moved"
	if err := os.Rename(key, moved); err != nil {
		t.Fatal(err)
	}
	return upKey{Pub: key + ".pub", Fingerprint: ssh.FingerprintSHA256(readPub(t, key+".pub")), Comment: name, priv: moved}
}

// worldReadable lets the "remote" hosts' ssh (same machine, same user or
// not) read the public key files in dir.
func worldReadable(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// loginWith logs in along hops with only the key pub (IdentitiesOnly):
// loginWith(a, n, pub, "jump", "target") is
// ssh -A jump 'ssh target echo reached-target', each hop offering pub only.
func loginWith(t *testing.T, a *agentProc, n *sshNet, pub string, hops ...string) (string, bool) {
	t.Helper()
	last := hops[len(hops)-1]
	id := "-o IdentitiesOnly=yes -i " + pub
	cmd := "echo reached-" + last
	for i := len(hops) - 1; i > 0; i-- {
		fwd := ""
		if i < len(hops)-1 {
			fwd = "-A "
		}
		cmd = fmt.Sprintf("ssh -F %s %s %s%s %s", n.Config, id, fwd, hops[i], shQuote(cmd))
	}
	args := []string{"-o", "IdentitiesOnly=yes", "-i", pub}
	if len(hops) > 1 {
		args = append(args, "-A")
	}
	out, code := n.ssh(a, append(args, hops[0], cmd)...)
	return out, code == 0 && strings.Contains(out, "reached-"+last)
}

// upRecord is an audit record as the JSON log holds it, read with the
// field names a user reads (key.upstream): the test does not depend on
// the Go type that writes it.
type upRecord struct {
	Time     time.Time       `json:"time"`
	Seq      uint64          `json:"seq"`
	Event    string          `json:"event"`
	Decision string          `json:"decision"`
	Rule     string          `json:"rule"`
	Reason   string          `json:"reason"`
	Key      *upRecordKey    `json:"key"`
	Prompt   json.RawMessage `json:"prompt"`
	Path     []audit.Hop     `json:"path"`
}

type upRecordKey struct {
	Fingerprint string `json:"fingerprint"`
	Comment     string `json:"comment"`
	Upstream    string `json:"upstream"`
}

func (r upRecord) String() string {
	k := "-"
	if r.Key != nil {
		k = fmt.Sprintf("%s upstream=%q", r.Key.Comment, r.Key.Upstream)
	}
	return fmt.Sprintf("%s %s rule=%q reason=%q key=%s", r.Event, r.Decision, r.Rule, r.Reason, k)
}

// readUpRecords reads every complete record of the audit log.
func readUpRecords(t *testing.T, path string) []upRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []upRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r upRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord waits (up to 5 s: some records are written at connection
// close) for a record from index from on that keep accepts.
func waitRecord(t *testing.T, a *agentProc, from int, what string, keep func(upRecord) bool) upRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := readUpRecords(t, a.Audit)
		if from > len(recs) {
			from = len(recs)
		}
		for _, r := range recs[from:] {
			if keep(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			var all []string
			for _, r := range recs[from:] {
				all = append(all, r.String())
			}
			t.Fatalf("no audit record %s; records:\n%s", what, strings.Join(all, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordCount is the number of records in the audit log now.
func recordCount(t *testing.T, a *agentProc) int {
	t.Helper()
	return len(readUpRecords(t, a.Audit))
}

// forKey reports whether r is about the key with fingerprint fp.
func forKey(r upRecord, fp string) bool { return r.Key != nil && r.Key.Fingerprint == fp }

// isRefusal is a decision against the key: a denied sign, or a denied
// list that hid the key from a path the policy refuses it on (ssh there
// then never asks to sign).
func isRefusal(r upRecord) bool {
	return r.Decision == "denied" && (r.Event == "sign" || r.Event == "list")
}

// softHSM is a SoftHSM2 token with one EC P-256 key pair, "k1".
type softHSM struct {
	Module string
	Conf   string // SOFTHSM2_CONF
	PIN    string
}

const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// newSoftHSM initialises a token in a private token directory and makes
// the key pair on it with pkcs11-tool (the private key never leaves it).
func newSoftHSM(t *testing.T) *softHSM {
	t.Helper()
	need(t, "softhsm2-util", "softhsm2")
	need(t, softHSMModule, "softhsm2")
	need(t, "pkcs11-tool", "opensc")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &softHSM{Module: softHSMModule, Conf: filepath.Join(dir, "softhsm2.conf"), PIN: "1234"}
	if err := os.WriteFile(h.Conf, []byte("directories.tokendir = "+tokens+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "SOFTHSM2_CONF=" + h.Conf}
	for _, args := range [][]string{
		{"softhsm2-util", "--init-token", "--slot", "0", "--label", "t1", "--pin", h.PIN, "--so-pin", "5678"},
		{"pkcs11-tool", "--module", h.Module, "--login", "--pin", h.PIN, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "k1"},
	} {
		if out, code := runEnv(t, env, "", args[0], args[1:]...); code != 0 {
			t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	return h
}

// env is what ssh-agent and ssh-add need to find the token.
func (h *softHSM) env() []string { return []string{"SOFTHSM2_CONF=" + h.Conf} }

// load adds the token's keys to the upstream agent: `ssh-add -s MODULE`,
// the PIN given by an SSH_ASKPASS script, as a user's desktop would. It
// returns the public key line ssh-add -L shows.
func (h *softHSM) load(t *testing.T, u *upstreamAgent) string {
	t.Helper()
	dir := t.TempDir()
	ask := filepath.Join(dir, "pin")
	if err := os.WriteFile(ask, []byte("#!/bin/sh\necho "+h.PIN+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	env := append(u.sshAddEnv(), "SSH_ASKPASS="+ask, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:none")
	if out, code := runEnv(t, env, "", "ssh-add", "-s", h.Module); code != 0 || !strings.Contains(out, "Card added") {
		t.Fatalf("ssh-add -s %s: exit %d\n%s", h.Module, code, out)
	}
	out, code := runEnv(t, u.sshAddEnv(), "", "ssh-add", "-L")
	if code != 0 || !strings.HasPrefix(out, "ecdsa-sha2-nistp256 ") {
		t.Fatalf("ssh-add -L after loading the token: exit %d\n%s", code, out)
	}
	return strings.TrimSpace(out)
}

// hungUpstream is an upstream agent that never answers: it lists keys
// (or hangs listing, when keys is nil) and hangs on every sign. Session
// binds are accepted, as OpenSSH's agent does. The wire format is
// x/crypto's agent server.
type hungUpstream struct {
	Socket string
	keys   []*sshagent.Key

	signs   chan struct{} // one value per sign request received
	release chan struct{} // closed at cleanup: the hung calls return
}

// errHung is every answer of the fake: to Add and the like at once, to
// List and Sign when the test ends (x/crypto's server logs it then).
var errHung = errors.New("hung upstream fake: released at test end or not supported")

// startHungUpstream listens on a fresh socket. With keys nil, list
// requests hang too.
func startHungUpstream(t *testing.T, keys []*sshagent.Key) *hungUpstream {
	t.Helper()
	h := &hungUpstream{Socket: filepath.Join(shortTempDir(t), "hung.sock"), keys: keys, signs: make(chan struct{}, 16), release: make(chan struct{})}
	l, err := net.Listen("unix", h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _ = sshagent.ServeAgent(h, c) }()
		}
	}()
	t.Cleanup(func() {
		close(h.release)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return h
}

// hangKey is the listing entry for a real public key.
func hangKey(pub ssh.PublicKey, comment string) *sshagent.Key {
	return &sshagent.Key{Format: pub.Type(), Blob: pub.Marshal(), Comment: comment}
}

func (h *hungUpstream) List() ([]*sshagent.Key, error) {
	if h.keys == nil {
		<-h.release
		return nil, errHung
	}
	return h.keys, nil
}

func (h *hungUpstream) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return h.SignWithFlags(key, data, 0)
}

func (h *hungUpstream) SignWithFlags(ssh.PublicKey, []byte, sshagent.SignatureFlags) (*ssh.Signature, error) {
	select {
	case h.signs <- struct{}{}:
	default:
	}
	<-h.release
	return nil, errHung
}

// Extension accepts session-bind@openssh.com (an empty success reply).
func (h *hungUpstream) Extension(typ string, _ []byte) ([]byte, error) {
	if typ == extSessionBind {
		return nil, nil
	}
	return nil, sshagent.ErrExtensionUnsupported
}

func (h *hungUpstream) Add(sshagent.AddedKey) error    { return errHung }
func (h *hungUpstream) Remove(ssh.PublicKey) error     { return errHung }
func (h *hungUpstream) RemoveAll() error               { return errHung }
func (h *hungUpstream) Lock([]byte) error              { return errHung }
func (h *hungUpstream) Unlock([]byte) error            { return errHung }
func (h *hungUpstream) Signers() ([]ssh.Signer, error) { return nil, errHung }
