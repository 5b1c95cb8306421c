package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
)

// ltLong reports whether the long load variants run: go test -short=false
// with SAFE_AGENT_LONG=1.
func ltLong() bool { return !testing.Short() && os.Getenv("SAFE_AGENT_LONG") == "1" }

// ltQuietLog silences the standard logger, which x/crypto's ServeAgent
// writes a line to for every refused request, for the test's duration.
func ltQuietLog(t testing.TB) {
	w := log.Writer()
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(w) })
}

// ltServer is a Server serving on a fresh socket, shut down at cleanup.
func ltServer(t testing.TB, o Options) (*Server, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa-lt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s", "agent.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := New(o)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, sock
}

func ltDial(t testing.TB, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ltKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ltPub(t testing.TB, k ed25519.PrivateKey) ssh.PublicKey {
	t.Helper()
	p, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMaxConns: connections up to Options.MaxConns are served; the next
// one is closed at once (the client reads end-of-file, no reply, no hang)
// while the first ones keep working; closing one frees its slot.
func TestMaxConns(t *testing.T) {
	const limit = 10
	_, sock := ltServer(t, Options{MaxConns: limit})
	var held []sshagent.ExtendedAgent
	var conns []net.Conn
	for i := range limit {
		c := ltDial(t, sock)
		ag := sshagent.NewClient(c)
		if _, err := ag.List(); err != nil {
			t.Fatalf("connection %d of %d (within the limit): %v", i+1, limit, err)
		}
		held, conns = append(held, ag), append(conns, c)
	}

	t.Run("over the limit, silent client", func(t *testing.T) {
		c := ltDial(t, sock)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection over the limit: read %d bytes, err %v; want end-of-file", n, err)
		}
	})
	t.Run("over the limit, client sends a request", func(t *testing.T) {
		c := ltDial(t, sock)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := sshagent.NewClient(c).List()
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("list over the limit: %v; want the connection closed (EOF or reset), not an answer or a hang", err)
		}
		t.Logf("client over the limit sees: %v", err)
	})
	for i, ag := range held {
		if _, err := ag.List(); err != nil {
			t.Fatalf("connection %d stopped working after refusals over the limit: %v", i+1, err)
		}
	}
	// A closed connection frees its slot (the server notices the close
	// asynchronously: retry briefly).
	conns[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := ltDial(t, sock)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := sshagent.NewClient(c).List()
		if err == nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("slot of a closed connection not freed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ltMixed sends n mixed requests over conns connections and checks every
// reply: list (the resident key is there), sign with the resident key
// (signature verifies), add a throwaway key / sign with it / remove it /
// sign again (refused), and an unknown extension (SSH_AGENT_FAILURE).
func ltMixed(t testing.TB, sock string, resident ssh.PublicKey, conns, n int) {
	t.Helper()
	data := []byte("mixed-load data to sign, 64 bytes long ............................")[:64]
	per := n / conns
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		throw := ltKey(t)
		throwPub := ltPub(t, throw)
		c := ltDial(t, sock)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			ag := sshagent.NewClient(c)
			fail := func(i int, format string, args ...any) {
				errs <- fmt.Errorf("conn %d request %d: %s", w, i, fmt.Sprintf(format, args...))
			}
			for i, step := 0, 0; i < per; step++ {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				switch step % 4 {
				case 0:
					keys, err := ag.List()
					if err != nil {
						fail(i, "list: %v", err)
						return
					}
					found := false
					for _, k := range keys {
						found = found || bytes.Equal(k.Blob, resident.Marshal())
					}
					if !found {
						fail(i, "list lacks the resident key (%d keys)", len(keys))
						return
					}
					i++
				case 1:
					sig, err := ag.Sign(resident, data)
					if err != nil {
						fail(i, "sign: %v", err)
						return
					}
					if err := resident.Verify(data, sig); err != nil {
						fail(i, "bad signature: %v", err)
						return
					}
					i++
				case 2:
					if err := ag.Add(sshagent.AddedKey{PrivateKey: throw, Comment: fmt.Sprintf("throwaway-%d", w)}); err != nil {
						fail(i, "add: %v", err)
						return
					}
					sig, err := ag.Sign(throwPub, data)
					if err != nil || throwPub.Verify(data, sig) != nil {
						fail(i+1, "sign with the throwaway key: %v", err)
						return
					}
					if err := ag.Remove(throwPub); err != nil {
						fail(i+2, "remove: %v", err)
						return
					}
					if _, err := ag.Sign(throwPub, data); err == nil {
						fail(i+3, "sign with a removed key succeeded")
						return
					}
					i += 4
				case 3:
					_, err := ag.Extension("no-such-extension@bench.example", []byte("x"))
					if !errors.Is(err, sshagent.ErrExtensionUnsupported) {
						fail(i, "unknown extension: %v, want SSH_AGENT_FAILURE", err)
						return
					}
					i++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// ltFDs counts this process's open file descriptors.
func ltFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// TestMixedLoadNoLeak: 10,000 mixed requests (100,000 in the long run)
// over 16 connections, every reply correct; afterwards the process has
// as many goroutines and file descriptors as before.
func TestMixedLoadNoLeak(t *testing.T) {
	n := 10_000
	if ltLong() {
		n = 100_000
	}
	ltQuietLog(t)
	al, err := audit.Open(filepath.Join(t.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	srv, sock := ltServer(t, Options{Audit: al})
	// The counts before any connection: what must remain afterwards.
	goroutines, fds := runtime.NumGoroutine(), ltFDs(t)
	resident := ltKey(t)
	setup := ltDial(t, sock)
	if err := sshagent.NewClient(setup).Add(sshagent.AddedKey{PrivateKey: resident, Comment: "resident"}); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	ltMixed(t, sock, ltPub(t, resident), 16, n)
	if t.Failed() {
		return
	}
	// Connections end asynchronously after the clients close: wait for
	// the counts to come back, then compare.
	ltSettle(t, srv, 0)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines || ltFDs(t) > fds {
		if time.Now().After(deadline) {
			var dump strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Fatalf("after %d requests: %d goroutines (before %d), %d fds (before %d)\n%s",
				n, runtime.NumGoroutine(), goroutines, ltFDs(t), fds, dump.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ltSettle waits until the server tracks at most n connections.
func ltSettle(t testing.TB, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		open := len(s.conns)
		s.mu.Unlock()
		if open <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still has %d connections, want ≤ %d", open, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHalfFrameStall: clients that send half a frame (or half a header)
// and stall hold only their own connection; everyone else's requests
// keep completing, and new connections are served.
func TestHalfFrameStall(t *testing.T) {
	_, sock := ltServer(t, Options{})
	k := ltKey(t)
	good := sshagent.NewClient(ltDial(t, sock))
	if err := good.Add(sshagent.AddedKey{PrivateKey: k}); err != nil {
		t.Fatal(err)
	}
	for _, stall := range [][]byte{
		{0, 0, 0, 100, 11}, // header promises 100 bytes, 1 sent
		{0, 0},             // half a header
		{0, 0, 0, 69, 13, 0, 0, 0, 51, 0, 0, 0, 11, 's', 's', 'h'}, // sign request cut in the key blob
	} {
		c := ltDial(t, sock)
		if _, err := c.Write(stall); err != nil {
			t.Fatal(err)
		}
	}
	pub := ltPub(t, k)
	for i := range 200 {
		if _, err := good.Sign(pub, []byte("data")); err != nil {
			t.Fatalf("sign %d with stalled clients connected: %v", i, err)
		}
	}
	fresh := sshagent.NewClient(ltDial(t, sock))
	if keys, err := fresh.List(); err != nil || len(keys) != 1 {
		t.Fatalf("new connection with stalled clients connected: %d keys, %v", len(keys), err)
	}
}

// ltPromptScript writes a fake askpass program: it records its process
// id in dir/prompts, answers yes at once when dir/yes exists, and
// otherwise waits (like a person who never answers) until it is killed.
func ltPromptScript(t testing.TB, dir string) string {
	t.Helper()
	script := filepath.Join(dir, "askpass")
	body := "#!/bin/sh\necho $$ >> " + filepath.Join(dir, "prompts") + "\n" +
		"[ -e " + filepath.Join(dir, "yes") + " ] && exit 0\nexec sleep 120\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script
}

// ltPrompts reads the process ids of the prompts started so far.
func ltPrompts(t testing.TB, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "prompts"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err != nil {
			t.Fatalf("prompts file: %q", b)
		}
		pids = append(pids, pid)
	}
	return pids
}

// ltWaitFor polls cond for up to 10 s.
func ltWaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDisconnectMidPromptFreesSlot: a client that hangs up while its
// request waits on a prompt frees everything it held: the prompt program
// is killed, the refusal is audited as "client went away", its connection
// slot is free for another client (MaxConns 2), and the next request that
// needs a prompt gets one at once (prompts are shown one at a time).
func TestDisconnectMidPromptFreesSlot(t *testing.T) {
	need := func(prog string) {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not found (coreutils/dash): needed for the fake prompt program", prog)
		}
	}
	need("sh")
	need("sleep")
	ltQuietLog(t)
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	srv, sock := ltServer(t, Options{
		MaxConns:  2,
		Audit:     al,
		PromptEnv: notify.Env{Display: ":test", SSHAskpass: ltPromptScript(t, dir), Path: os.Getenv("PATH")},
	})
	k := ltKey(t)
	pub := ltPub(t, k)
	admin := ltDial(t, sock)
	if err := sshagent.NewClient(admin).Add(sshagent.AddedKey{PrivateKey: k, Comment: "confirm-me", ConfirmBeforeUse: true}); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	ltSettle(t, srv, 0)

	// A asks; the prompt starts and nobody answers.
	a := ltDial(t, sock)
	aDone := make(chan error, 1)
	go func() {
		_, err := sshagent.NewClient(a).Sign(pub, []byte("data"))
		aDone <- err
	}()
	ltWaitFor(t, "the first prompt to start", func() bool { return len(ltPrompts(t, dir)) == 1 })
	first := ltPrompts(t, dir)[0]
	// A hangs up mid-prompt.
	a.Close()
	if err := <-aDone; err == nil {
		t.Fatal("the client that hung up got a signature")
	}
	ltWaitFor(t, fmt.Sprintf("the abandoned prompt (pid %d) to be killed", first), func() bool {
		return syscall.Kill(first, 0) != nil
	})
	ltSettle(t, srv, 0)
	ltWaitFor(t, "the audit record of the abandoned request", func() bool {
		b, _ := os.ReadFile(auditPath)
		return bytes.Contains(b, []byte("the client went away before an answer"))
	})

	// B and C: both connection slots are free again, and B's prompt is
	// shown at once (the prompt slot was freed too) and answered yes.
	if err := os.WriteFile(filepath.Join(dir, "yes"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := ltDial(t, sock)
	c := ltDial(t, sock)
	for _, conn := range []net.Conn{b, c} {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := sshagent.NewClient(c).List(); err != nil {
		t.Fatalf("second connection slot not freed by the client that hung up: %v", err)
	}
	sig, err := sshagent.NewClient(b).Sign(pub, []byte("data"))
	if err != nil {
		t.Fatalf("sign after the abandoned prompt: %v (prompts started: %v)", err, ltPrompts(t, dir))
	}
	if err := pub.Verify([]byte("data"), sig); err != nil {
		t.Fatal(err)
	}
	if n := len(ltPrompts(t, dir)); n != 2 {
		t.Errorf("%d prompts shown, want 2 (one per request)", n)
	}
}

// ltRaiseNoFile raises this process's open-file limit to at least n, or
// skips.
func ltRaiseNoFile(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("open-file limit %d is below the %d this test needs: raise it (ulimit -Hn)", lim.Max, n)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise open-file limit to %d: %v", n, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// TestDefaultMaxConnsHeld: up to DefaultMaxConns-1 held connections in
// process (long run only; the default run holds 1,000 in
// test/load_test.go against the real binary).
func TestDefaultMaxConnsHeld(t *testing.T) {
	if !ltLong() {
		t.Skip("long variant: go test -short=false with SAFE_AGENT_LONG=1")
	}
	ltRaiseNoFile(t, 2*DefaultMaxConns+256)
	// One process holds them all: no per-process cap or reserve here.
	_, sock := ltServer(t, Options{MaxConnsPerProcess: -1, ReservedConns: -1})
	for i := range DefaultMaxConns {
		c := ltDial(t, sock)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := sshagent.NewClient(c).List(); err != nil {
			t.Fatalf("connection %d of %d (the documented limit) refused: %v", i+1, DefaultMaxConns, err)
		}
	}
	c := ltDial(t, sock)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("connection %d (over the limit): read %d, %v; want end-of-file", DefaultMaxConns+1, n, err)
	}
}
