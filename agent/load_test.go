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
	"path/filepath"
	"reflect"
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

// TestDisconnectMidPromptFreesSlot is the "a client that disconnects
// mid-prompt frees its slot" fault test. It needs a way to plug a prompt
// into the agent (a Confirmer/prompt hook in Options), which the notify
// integration adds. The test to write then, with a fake confirmer that
// blocks until its context is cancelled:
//
//  1. key added with confirm (ssh-add -c); client A asks to sign: the
//     fake prompt starts and blocks;
//  2. A closes its connection: the prompt's context is cancelled within
//     a second, the audit record says denied (client went away), and the
//     connection is gone from the server;
//  3. client B asks to sign: a new prompt is shown (the one-at-a-time
//     prompt slot was freed), the fake answers yes, B gets a signature;
//  4. with MaxConns 2, A's connection slot is free again for a third
//     client.
func TestDisconnectMidPromptFreesSlot(t *testing.T) {
	typ := reflect.TypeOf(Options{})
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if strings.Contains(name, "Confirm") || strings.Contains(name, "Prompt") {
			t.Fatalf("agent.Options now has a prompt hook (%s): write this test against it (see its comment)", name)
		}
	}
	t.Skip("needs a prompt hook in agent.Options (Confirmer): the notify integration is not wired in yet")
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
	_, sock := ltServer(t, Options{})
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
