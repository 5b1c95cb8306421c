package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// fakeClock is a settable clock for the retry interval.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// serveAgentAt serves ag on a unix socket at path (an in-process
// upstream agent) until the returned stop is called; stop also closes
// every connection, as a dying agent's would be.
func serveAgentAt(t *testing.T, path string, ag sshagent.Agent) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _ = sshagent.ServeAgent(ag, c); c.Close() }()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
	}
	t.Cleanup(stop)
	return stop
}

// silentAgentAt accepts connections at path and never answers.
func silentAgentAt(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

// keyringWith is an x/crypto keyring agent holding one new ed25519 key.
func keyringWith(t *testing.T, comment string) (sshagent.Agent, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr := sshagent.NewKeyring()
	if err := kr.Add(sshagent.AddedKey{PrivateKey: priv, Comment: comment}); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return kr, pub
}

// bindRecorder is an upstream that knows session-bind: it records each
// bind it is sent and refuses the ones refuse says to.
type bindRecorder struct {
	sshagent.Agent
	mu       sync.Mutex
	binds    [][]byte
	attempts int
	refuse   func(n int) bool // n: 1 for the first bind on any connection
}

func (b *bindRecorder) SignWithFlags(key ssh.PublicKey, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	return b.Agent.(sshagent.ExtendedAgent).SignWithFlags(key, data, flags)
}

func (b *bindRecorder) Extension(name string, contents []byte) ([]byte, error) {
	if name != upstreamBindExt {
		return nil, sshagent.ErrExtensionUnsupported
	}
	if isProbeBind(contents) {
		return nil, nil // safe-agent's own probe: accepted, not counted
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	if b.refuse != nil && b.refuse(b.attempts) {
		return nil, errors.New("refused")
	}
	b.binds = append(b.binds, bytes.Clone(contents))
	return nil, nil
}

// isProbeBind says whether contents are a well-formed session-bind body
// (the test's client binds are not).
func isProbeBind(contents []byte) bool {
	var m struct {
		HostKey, SessionID, Signature []byte
		Forwarded                     bool
	}
	return ssh.Unmarshal(contents, &m) == nil
}

func (b *bindRecorder) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, x := range b.binds {
		out = append(out, string(x))
	}
	return out
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testUpstreamSet(t *testing.T, timeout time.Duration, sockets ...string) (*upstreamSet, *fakeClock, *logBuf) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := upstreamConfig{sockets: sockets, timeout: timeout}
	return newUpstreamSet(func() upstreamConfig { return cfg }, log, clock.now), clock, logs
}

func TestUpstreamListAndSign(t *testing.T) {
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	agA, pubA := keyringWith(t, "yubikey")
	agB, pubB := keyringWith(t, "vault")
	// B also holds A's key: listed once, from A (upstream order).
	serveAgentAt(t, sockA, agA)
	serveAgentAt(t, sockB, agB)
	set, _, _ := testUpstreamSet(t, 2*time.Second, sockA, sockB)
	link := newUpstreamLink(set)
	defer link.close()

	ids := link.list()
	if len(ids) != 2 {
		t.Fatalf("list: %d keys, want 2", len(ids))
	}
	if ids[0].Blob != string(pubA.Marshal()) || ids[0].Upstream != sockA || ids[0].Comment != "yubikey" || ids[0].Fingerprint != ssh.FingerprintSHA256(pubA) {
		t.Errorf("first key: %+v, want A's key from %s", ids[0], sockA)
	}
	if ids[1].Blob != string(pubB.Marshal()) || ids[1].Upstream != sockB || ids[1].Comment != "vault" {
		t.Errorf("second key: %+v, want B's key from %s", ids[1], sockB)
	}
	if got := set.find(pubB.Marshal()); got != ids[1] {
		t.Errorf("find(B) = %v, want the listed identity", got)
	}

	data := []byte("data to sign")
	sig, err := link.sign(ids[0], data, 0)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if err := pubA.Verify(data, sig); err != nil {
		t.Errorf("upstream signature does not verify: %v", err)
	}
	st := set.status()
	if len(st) != 2 || !st[0].Reachable || st[0].Keys != 1 || st[0].LastError != "" || st[0].Socket != sockA {
		t.Errorf("status: %+v", st)
	}
}

func TestUpstreamRefusesSign(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	ag, _ := keyringWith(t, "held")
	serveAgentAt(t, sock, ag)
	set, _, _ := testUpstreamSet(t, 2*time.Second, sock)
	link := newUpstreamLink(set)
	defer link.close()
	link.list()
	// A key the upstream listed once but holds no more.
	_, other := keyringWith(t, "gone")
	id := &identity{Public: other, Blob: string(other.Marshal()), Upstream: sock}
	_, err := link.sign(id, []byte("x"), 0)
	want := "upstream agent " + sock + " refused the signature request"
	if err == nil || err.Error() != want {
		t.Fatalf("sign of a key the upstream does not hold: %v, want %q", err, want)
	}
	if st := set.status(); !st[0].Reachable {
		t.Errorf("a refusal made the upstream unreachable: %+v", st)
	}
}

func TestUpstreamTimeoutDoesNotBlockOthers(t *testing.T) {
	dir := t.TempDir()
	hung, good := filepath.Join(dir, "hung.sock"), filepath.Join(dir, "good.sock")
	silentAgentAt(t, hung)
	ag, pub := keyringWith(t, "fine")
	serveAgentAt(t, good, ag)
	set, _, _ := testUpstreamSet(t, 300*time.Millisecond, hung, good)

	// One client waits on the hung upstream; another client, meanwhile,
	// signs through the good one at once.
	hungID := &identity{Public: pub, Blob: string(pub.Marshal()), Upstream: hung}
	slow := newUpstreamLink(set)
	defer slow.close()
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := slow.sign(hungID, []byte("x"), 0)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	fast := newUpstreamLink(set)
	defer fast.close()
	goodID := &identity{Public: pub, Blob: string(pub.Marshal()), Upstream: good}
	t0 := time.Now()
	if _, err := fast.sign(goodID, []byte("y"), 0); err != nil {
		t.Fatalf("sign through the good upstream: %v", err)
	}
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Errorf("sign through the good upstream took %v while another client waited on a hung one", d)
	}
	err := <-errc
	want := "upstream agent " + hung + " did not answer within 300ms (signature request)"
	if err == nil || err.Error() != want {
		t.Fatalf("hung sign: %v, want %q", err, want)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("hung sign returned after %v, want about the 300ms timeout", d)
	}
	if st := set.bySocket[hung].status(); !strings.HasPrefix(st.LastError, "did not answer within 300ms") {
		t.Errorf("health after a timeout: %+v", st)
	}
	// A list is bounded too, and the hung upstream's keys are not offered.
	t0 = time.Now()
	lister := newUpstreamLink(set)
	defer lister.close()
	ids := lister.list()
	if len(ids) != 1 || ids[0].Upstream != good {
		t.Errorf("list with one hung upstream: %v", ids)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("list took %v", d)
	}
	st := set.status()
	if st[0].Reachable || !strings.Contains(st[0].LastError, "did not answer within 300ms (list request)") || !st[1].Reachable {
		t.Errorf("status with one hung upstream: %+v", st)
	}
}

func TestUpstreamUnreachableThenRecovers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "later.sock")
	set, clock, logs := testUpstreamSet(t, 2*time.Second, sock)
	link := newUpstreamLink(set)
	defer link.close()

	if ids := link.list(); len(ids) != 0 {
		t.Fatalf("list of a missing upstream: %v", ids)
	}
	st := set.status()
	if st[0].Reachable || !strings.Contains(st[0].LastError, "no such file or directory") {
		t.Errorf("status of a missing socket: %+v", st[0])
	}
	if !strings.Contains(logs.String(), "upstream agent unreachable") || !strings.Contains(logs.String(), sock) {
		t.Errorf("no warning in the log:\n%s", logs)
	}

	ag, pub := keyringWith(t, "back")
	stop := serveAgentAt(t, sock, ag)
	// Within a second of the failure it is not tried again.
	if ids := link.list(); len(ids) != 0 {
		t.Errorf("retried within a second: %v", ids)
	}
	clock.advance(upstreamRetry)
	ids := link.list()
	if len(ids) != 1 || ids[0].Blob != string(pub.Marshal()) {
		t.Fatalf("after the upstream came up: %v", ids)
	}
	if !strings.Contains(logs.String(), "upstream agent reachable again") {
		t.Errorf("recovery not logged:\n%s", logs)
	}
	if _, err := link.sign(ids[0], []byte("x"), 0); err != nil {
		t.Fatalf("sign: %v", err)
	}

	// The agent dies: the link's connection breaks, and a new one fails.
	stop()
	_, err := link.sign(ids[0], []byte("x"), 0)
	wantPrefix := "upstream agent " + sock + " unreachable: "
	if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) {
		t.Fatalf("sign on a dead upstream: %v, want %q…", err, wantPrefix)
	}
	if st := set.status(); st[0].Reachable {
		t.Errorf("dead upstream reported reachable: %+v", st[0])
	}
	// It comes back: the same client connection recovers (after the retry
	// interval) without reconnecting.
	stop2 := serveAgentAt(t, sock, ag)
	defer stop2()
	clock.advance(upstreamRetry)
	if _, err := link.sign(ids[0], []byte("x"), 0); err != nil {
		t.Fatalf("sign after the upstream returned: %v", err)
	}
	if st := set.status(); !st[0].Reachable || st[0].Keys != 1 {
		t.Errorf("status after recovery: %+v", st[0])
	}
}

func TestUpstreamBindReplay(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "openssh.sock")
	kr, pub := keyringWith(t, "h")
	rec := &bindRecorder{Agent: kr}
	serveAgentAt(t, sock, rec)
	set, _, _ := testUpstreamSet(t, 2*time.Second, sock)
	id := &identity{Public: pub, Blob: string(pub.Marshal()), Upstream: sock}

	link := newUpstreamLink(set)
	defer link.close()
	link.addBind([]byte("bind-1"))
	link.addBind([]byte("bind-2"))
	if _, err := link.sign(id, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	link.addBind([]byte("bind-3"))
	if _, err := link.sign(id, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.seen(), ","); got != "bind-1,bind-2,bind-3" {
		t.Errorf("binds replayed: %s, want each once, in order", got)
	}

	// An upstream that knows session-bind and refuses one: the sign fails.
	rec.refuse = func(n int) bool { return n == 5 }
	link2 := newUpstreamLink(set)
	defer link2.close()
	link2.addBind([]byte("bind-a"))
	link2.addBind([]byte("bind-b"))
	_, err := link2.sign(id, []byte("x"), 0)
	want := "upstream agent " + sock + " refused the session-bind (hop 2)"
	if err == nil || err.Error() != want {
		t.Fatalf("refused bind: %v, want %q", err, want)
	}
}

// TestUpstreamFirstBindRefusedStaysARefusal: a client whose bind the
// upstream refuses (the first the upstream ever gets from safe-agent)
// cannot switch replay off for later clients: support is learnt from
// safe-agent's own probe, so the refusal is a refusal and the next
// client's binds are still replayed.
func TestUpstreamFirstBindRefusedStaysARefusal(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "openssh.sock")
	kr, pub := keyringWith(t, "h")
	rec := &bindRecorder{Agent: kr, refuse: func(n int) bool { return n == 1 }}
	serveAgentAt(t, sock, rec)
	set, _, logs := testUpstreamSet(t, 2*time.Second, sock)
	id := &identity{Public: pub, Blob: string(pub.Marshal()), Upstream: sock}

	attacker := newUpstreamLink(set)
	defer attacker.close()
	attacker.addBind([]byte("crafted"))
	if _, err := attacker.sign(id, []byte("x"), 0); err == nil || !strings.Contains(err.Error(), "refused the session-bind (hop 1)") {
		t.Fatalf("sign after a refused bind: %v, want the refusal", err)
	}
	user := newUpstreamLink(set)
	defer user.close()
	user.addBind([]byte("honest"))
	if _, err := user.sign(id, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.seen(), ","); got != "honest" {
		t.Errorf("binds the upstream accepted: %q, want the next client's bind replayed", got)
	}
	if strings.Contains(logs.String(), "does not accept session-bind") {
		t.Errorf("a client's refused bind switched replay off:\n%s", logs)
	}
}

func TestUpstreamWithoutSessionBind(t *testing.T) {
	// x/crypto's keyring (like gpg-agent or yubikey-agent) knows no
	// session-bind: it answers failure, and gets no binds after that.
	sock := filepath.Join(t.TempDir(), "gpg.sock")
	kr, pub := keyringWith(t, "card")
	serveAgentAt(t, sock, kr)
	set, _, logs := testUpstreamSet(t, 2*time.Second, sock)
	link := newUpstreamLink(set)
	defer link.close()
	link.addBind([]byte("not-a-bind"))
	id := &identity{Public: pub, Blob: string(pub.Marshal()), Upstream: sock}
	if _, err := link.sign(id, []byte("x"), 0); err != nil {
		t.Fatalf("sign through an agent without session-bind: %v", err)
	}
	if !strings.Contains(logs.String(), "does not accept session-bind") {
		t.Errorf("not logged:\n%s", logs)
	}
	if set.current(); set.bySocket[sock].bindSupport() != bindsUnsupported {
		t.Errorf("bind support not recorded")
	}
}

func TestMergeSockets(t *testing.T) {
	got := mergeSockets([]string{"/a", "/b", "/a"}, []string{"/b", "/c", ""})
	if strings.Join(got, " ") != "/a /b /c" {
		t.Errorf("mergeSockets = %q", got)
	}
}

// TestUpstreamThroughServer: an upstream's keys through a served agent:
// listed after the own keys (an own copy wins), signed through the one
// pipeline with key.upstream in the record, in list and status, never
// removed or used while locked, and an upstream refusal recorded as such.
func TestUpstreamThroughServer(t *testing.T) {
	ltQuietLog(t)
	dir := t.TempDir()
	upSock := filepath.Join(dir, "up.sock")
	kr := sshagent.NewKeyring()
	upPriv, sharedPriv := ltKey(t), ltKey(t)
	for _, k := range []sshagent.AddedKey{{PrivateKey: upPriv, Comment: "on-token"}, {PrivateKey: sharedPriv, Comment: "shared-upstream"}} {
		if err := kr.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	serveAgentAt(t, upSock, kr)
	auditPath := filepath.Join(dir, "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	_, sock := ltServer(t, Options{Upstreams: []string{upSock}, Audit: al})
	c := sshagent.NewClient(ltDial(t, sock))
	if err := c.Add(sshagent.AddedKey{PrivateKey: sharedPriv, Comment: "own-copy"}); err != nil {
		t.Fatal(err)
	}
	upPub, sharedPub := ltPub(t, upPriv), ltPub(t, sharedPriv)

	keys, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.Comment)
	}
	if strings.Join(got, ",") != "own-copy,on-token" {
		t.Fatalf("list = %q, want own-copy then on-token (the shared key once, as the own copy)", got)
	}

	data := []byte("sign me")
	sig, err := c.Sign(upPub, data)
	if err != nil {
		t.Fatalf("sign with the upstream key: %v", err)
	}
	if err := upPub.Verify(data, sig); err != nil {
		t.Fatal(err)
	}
	rec := lastSignRecord(t, auditPath)
	if rec.Decision != audit.DecisionAllowed || rec.Key == nil || rec.Key.Upstream != upSock || rec.Key.Comment != "on-token" {
		t.Errorf("record of the upstream signature: %+v key %+v", rec, rec.Key)
	}
	if _, err := c.Sign(sharedPub, data); err != nil {
		t.Fatal(err)
	}
	if rec := lastSignRecord(t, auditPath); rec.Key.Upstream != "" {
		t.Errorf("the own copy signed as upstream %q", rec.Key.Upstream)
	}

	var infos []KeyInfo
	mustExtJSON(t, c, ExtList, &infos)
	if len(infos) != 2 || infos[0].Upstream != "" || infos[1].Upstream != upSock || infos[1].Comment != "on-token" {
		t.Errorf("list extension: %+v", infos)
	}
	var st Status
	mustExtJSON(t, c, ExtStatus, &st)
	if len(st.Upstreams) != 1 || st.Upstreams[0] != (UpstreamStatus{Socket: upSock, Reachable: true, Keys: 2}) {
		t.Errorf("status upstreams: %+v", st.Upstreams)
	}

	if err := c.Remove(upPub); err == nil {
		t.Error("ssh-add -d of an upstream key succeeded")
	}
	if ks, _ := kr.List(); len(ks) != 2 {
		t.Errorf("the upstream lost keys: %d left", len(ks))
	}

	if err := c.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if ks, _ := c.List(); len(ks) != 0 {
		t.Errorf("locked agent lists %d keys", len(ks))
	}
	if _, err := c.Sign(upPub, data); err == nil {
		t.Error("locked agent signed with an upstream key")
	}
	if err := c.Unlock([]byte("pw")); err != nil {
		t.Fatal(err)
	}

	// The upstream no longer holds the key: its refusal is the record's.
	if err := kr.Remove(upPub); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sign(upPub, data); err == nil {
		t.Fatal("signed with a key the upstream no longer holds")
	}
	rec = lastSignRecord(t, auditPath)
	want := "upstream agent " + upSock + " refused the signature request"
	if rec.Decision != audit.DecisionDenied || rec.Rule != "upstream" || rec.Reason != want || rec.Key.Upstream != upSock {
		t.Errorf("record of the upstream refusal: %s by %q: %q (key %+v), want denied by \"upstream\": %q", rec.Decision, rec.Rule, rec.Reason, rec.Key, want)
	}
}

func mustExtJSON(t *testing.T, c sshagent.ExtendedAgent, ext string, v any) {
	t.Helper()
	res, err := c.Extension(ext, nil)
	if err != nil {
		t.Fatalf("%s: %v", ext, err)
	}
	if err := json.Unmarshal(res[1:], v); err != nil {
		t.Fatalf("%s: %v", ext, err)
	}
}

// TestUpstreamListInParallel: two hung upstreams cost one list timeout.
func TestUpstreamListInParallel(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	silentAgentAt(t, a)
	silentAgentAt(t, b)
	set, _, _ := testUpstreamSet(t, 600*time.Millisecond, a, b)
	link := newUpstreamLink(set)
	defer link.close()
	start := time.Now()
	if ids := link.list(); len(ids) != 0 {
		t.Errorf("hung upstreams listed %d keys", len(ids))
	}
	// One after the other would take 1.2s.
	if d := time.Since(start); d < 600*time.Millisecond || d >= 1150*time.Millisecond {
		t.Errorf("list of two hung upstreams took %v, want one 600ms timeout", d)
	}
}
