//go:build linux

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
)

// fzRecorder is a fake agent connection that records the request frames
// x/crypto's client writes and answers each with SSH_AGENT_SUCCESS. It is
// not an io.Closer, so the client calls it serially (no reader goroutine).
type fzRecorder struct {
	sent    bytes.Buffer
	pending bytes.Buffer
}

func (r *fzRecorder) Write(p []byte) (int, error) {
	r.sent.Write(p)
	r.pending.Write([]byte{0, 0, 0, 1, 6})
	return len(p), nil
}

func (r *fzRecorder) Read(p []byte) (int, error) { return r.pending.Read(p) }

// fzFrames records the frames the client sends while fn runs; replies are
// ignored.
func fzFrames(fn func(ag sshagent.ExtendedAgent)) []byte {
	r := &fzRecorder{}
	fn(sshagent.NewClient(r))
	return r.sent.Bytes()
}

func fzFrame(body ...byte) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

// fzUnlocks counts unlock requests (type 23) in a stream: each wrong
// passphrase is answered after a growing delay (0.1 s, 0.2 s, …), which
// the per-input deadline must allow for.
func fzUnlocks(stream []byte) int {
	n := 0
	for len(stream) >= 5 {
		l := binary.BigEndian.Uint32(stream)
		if l == 0 || l > MaxFrame {
			break
		}
		if stream[4] == 23 {
			n++
		}
		if uint64(len(stream)) < 4+uint64(l) {
			break
		}
		stream = stream[4+l:]
	}
	return n
}

// fzSeeds are valid frames for every message type, as x/crypto's client
// and real OpenSSH send them, and malformed ones.
func fzSeeds(t testing.TB) [][]byte {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	edKey := ed25519.NewKeyFromSeed(seed)
	edPub, err := ssh.NewPublicKey(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ssh.NewPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x42}, 64)
	var restrict []byte
	var bindFrames, loginData []byte
	for _, r := range btCapture(t) {
		switch {
		case r.Op == "constraint" && restrict == nil:
			restrict = r.bytes(t)
		case r.Conn == 6 && r.Op == "extension":
			bindFrames = append(bindFrames, fzFrames(func(ag sshagent.ExtendedAgent) { ag.Extension(r.Name, r.bytes(t)) })...)
		case r.Conn == 6 && r.Op == "sign":
			loginData = r.bytes(t)
		}
	}
	seeds := [][]byte{
		fzFrames(func(ag sshagent.ExtendedAgent) { ag.List() }),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: edKey, Comment: "fuzz"})
			ag.List()
			ag.Sign(edPub, data)
			ag.SignWithFlags(edPub, data, sshagent.SignatureFlagRsaSha256)
			ag.Remove(edPub)
			ag.Sign(edPub, data)
			ag.List()
		}),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: ecKey, Comment: "fuzz-ecdsa", LifetimeSecs: 60, ConfirmBeforeUse: true})
			ag.Sign(ecPub, data)
			ag.RemoveAll()
		}),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: edKey, Comment: "restricted", ConstraintExtensions: []sshagent.ConstraintExtension{
				{ExtensionName: extRestrictDestination, ExtensionDetails: restrict},
			}})
			ag.List()
			ag.Sign(edPub, data)
		}),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: edKey, Comment: "settings", ConstraintExtensions: []sshagent.ConstraintExtension{
				{ExtensionName: ExtKeySettings, ExtensionDetails: []byte(`{"allow":["jump.example"]}`)},
			}})
		}),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: edKey})
			ag.Lock([]byte("pw"))
			ag.List()
			ag.Sign(edPub, data)
			ag.Unlock([]byte("wrong"))
			ag.Unlock([]byte("pw"))
			ag.List()
		}),
		fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Extension("no-such-extension@example.com", []byte("x"))
			ag.Extension(ExtList, nil)
			ag.Extension(ExtStatus, nil)
			ag.Extension(ExtForget, nil)
			ag.List()
		}),
		append(append(fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.Add(sshagent.AddedKey{PrivateKey: edKey})
		}), bindFrames...), fzFrames(func(ag sshagent.ExtendedAgent) {
			ag.List()
			ag.Sign(edPub, loginData)
		})...),
		// Malformed.
		fzFrame(11)[:3],
		{0, 0, 0, 5, 11},
		{0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff, 11},
		append([]byte{0, 4, 0, 1}, make([]byte, 64)...),
		fzFrame(200, 1, 2, 3),
		fzFrame(13, 0, 0, 0, 50, 1),
		fzFrame(17, 0, 0, 0, 11, 's', 's', 'h'),
		fzFrame(append([]byte{18}, append(ssh.Marshal(struct{ B []byte }{[]byte("x")}), 0xff)...)...),
		fzFrame(27, 0, 0, 0, 24, 's', 'e', 's', 's', 'i', 'o', 'n'),
		append(fzFrame(11), 0xde, 0xad, 0xbe, 0xef, 0x01),
	}
	if restrict == nil || bindFrames == nil || loginData == nil {
		t.Fatal("testdata/openssh92/capture.jsonl lacks the records the seeds need")
	}
	return seeds
}

// fzListener hands the Server connections made with socketpair(2): no
// socket file per input, so the fuzzer runs many inputs a second.
type fzListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newFzListener() *fzListener {
	return &fzListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *fzListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *fzListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *fzListener) Addr() net.Addr { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }

// dial makes a connected pair, gives one end to the server and returns
// the other.
func (l *fzListener) dial(t testing.TB) net.Conn {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = c
	}
	select {
	case l.conns <- ends[0]:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not accept a connection within 5 s")
	}
	return ends[1]
}

// fzOptions are the server options for fuzzing: prompts are answered yes
// at once by true(1), so requests that need a confirmation go all the way
// through, and no real dialog ever opens (without a display of its own
// the agent would borrow the client's, this test's, DISPLAY).
func fzOptions(t testing.TB) Options {
	t.Helper()
	yes, err := exec.LookPath("true")
	if err != nil {
		t.Skipf("true(1) not found: install coreutils")
	}
	return Options{PromptEnv: notify.Env{Display: ":fuzz", SSHAskpass: yes, Path: "/usr/bin:/bin"}}
}

// FuzzServeFrames feeds arbitrary bytes as one connection's stream into a
// running Server (a fresh one per input, so a lock or a key from one input
// does not change the next). The server must not panic or hang: the reply
// stream ends (the server closes after our end-of-file) before the
// deadline, a second connection is still served, and Shutdown completes.
func FuzzServeFrames(f *testing.F) {
	ltQuietLog(f)
	for _, s := range fzSeeds(f) {
		f.Add(s)
	}
	dir := f.TempDir()
	opts := fzOptions(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		// An audit log of its own per input: its background fsync then
		// runs at the same point of every input, which keeps coverage
		// stable enough for the fuzzer to tell new paths from noise.
		logPath := filepath.Join(dir, "audit.jsonl")
		al, err := audit.Open(logPath, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(logPath)
		defer al.Close()
		o := opts
		o.Audit = al
		srv := New(o)
		l := newFzListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown after the input: %v", err)
			}
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
		c := l.dial(t)
		defer c.Close()
		u := fzUnlocks(stream)
		limit := 5*time.Second + time.Duration(u*(u+1)/2)*100*time.Millisecond
		_ = c.SetDeadline(time.Now().Add(limit))
		go func() {
			_, _ = c.Write(stream)
			_ = c.(*net.UnixConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server neither answered nor closed the connection within %v (%d-byte input)", limit, len(stream))
			}
		}
		c2 := l.dial(t)
		defer c2.Close()
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := sshagent.NewClient(c2).List(); err != nil {
			t.Fatalf("a second connection is not served after the input: %v", err)
		}
	})
}

// TestFuzzSeedsServed checks that the valid seeds are what they claim:
// replayed into a server, they get the replies a real client expects, so
// the fuzzer starts from deep inside the pipeline, not at the parser's
// door.
func TestFuzzSeedsServed(t *testing.T) {
	ltQuietLog(t)
	seeds := fzSeeds(t)
	cases := []struct {
		seed int
		want []byte // reply message types in order
	}{
		// add, list, sign, sign (flags), remove, sign (gone), list
		{1, []byte{6, 12, 14, 14, 6, 5, 12}},
		// add with lifetime and confirm, sign (the fake prompt says yes), remove all
		{2, []byte{6, 14, 6}},
		// add with ssh-add -h constraint, list, sign (local: refused by the constraint)
		{3, []byte{6, 12, 5}},
		// add with key settings
		{4, []byte{6}},
		// add, lock, list, sign, unlock wrong, unlock, list
		{5, []byte{6, 6, 12, 5, 5, 6, 12}},
		// unknown extension, list/status/forget extensions, list
		{6, []byte{5, 6, 6, 6, 12}},
		// add, two real OpenSSH session-binds, list, login sign
		{7, []byte{6, 6, 6, 12, 5}},
	}
	for _, tc := range cases {
		_, sock := ltServer(t, fzOptions(t))
		c := ltDial(t, sock)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(seeds[tc.seed])
		var got []byte
		for range tc.want {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("seed %d: after replies %v: %v", tc.seed, got, err)
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(c, body); err != nil || len(body) == 0 {
				t.Fatalf("seed %d: after replies %v: %v", tc.seed, got, err)
			}
			got = append(got, body[0])
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("seed %d: reply types %v, want %v", tc.seed, got, tc.want)
		}
	}
}
