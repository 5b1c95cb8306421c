package test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
)

// The load and fault tests run a bounded version by default (fit for CI,
// also under -race); the long variants need go test -short=false with
// SAFE_AGENT_LONG=1.
func longLoad() bool { return !testing.Short() && os.Getenv("SAFE_AGENT_LONG") == "1" }

// raiseNoFile raises the open-file limit of the test process (and so of
// the agents it starts, which inherit it) to at least n.
func raiseNoFile(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("open-file hard limit %d is below the %d this test needs: raise it (ulimit -Hn, or LimitNOFILE in systemd)", lim.Max, n)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise the open-file limit to %d: %v", n, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// agentFDs counts the agent process's open file descriptors.
func (a *agentProc) fds() int {
	a.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.cmd.Process.Pid))
	if err != nil {
		a.t.Fatalf("count the agent's file descriptors: %v", err)
	}
	return len(ents)
}

// threads reads Threads from the agent's /proc/PID/status.
func (a *agentProc) threads() int {
	a.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				a.t.Fatal(err)
			}
			return n
		}
	}
	a.t.Fatal("no Threads line in /proc/PID/status")
	return 0
}

// waitFDs waits until the agent has at most want file descriptors open
// (connections close asynchronously after clients hang up).
func (a *agentProc) waitFDs(want int, what string) {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := a.fds()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s: the agent has %d file descriptors open, want ≤ %d (a leak)", what, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// residentKey adds an ed25519 key with ssh-add and returns its public key.
func residentKey(t testing.TB, a *agentProc) ssh.PublicKey {
	t.Helper()
	k := newKey(t, t.TempDir(), "resident", "ed25519", 0)
	a.mustRun("ssh-add", k)
	b, err := os.ReadFile(k + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// signer signs with pub in a loop on its own connection until stop is
// closed; it counts signatures and keeps the first error.
type signer struct {
	ok   atomic.Int64
	err  error
	done chan struct{}
}

func startSigner(t testing.TB, a *agentProc, pub ssh.PublicKey, stop <-chan struct{}) *signer {
	t.Helper()
	c := a.rawConn()
	s := &signer{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ag := sshagent.NewClient(c)
		data := []byte("load test data")
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			sig, err := ag.Sign(pub, data)
			if err == nil {
				err = pub.Verify(data, sig)
			}
			if err != nil {
				s.err = fmt.Errorf("sign %d: %w", s.ok.Load()+1, err)
				return
			}
			s.ok.Add(1)
		}
	}()
	return s
}

// TestManyConnectionsHeld: 1,000 connections (long run: up to the
// documented limit, agent.DefaultMaxConns) held open and each served,
// while another client signs the whole time and every signature works.
// The long run then checks that the next connection over the limit is
// closed cleanly.
func TestManyConnectionsHeld(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	held := 1000
	var args []string
	if longLoad() {
		// The signer holds the last slot; the reserve is kept for other
		// processes.
		held = agent.DefaultMaxConns - agent.DefaultReservedConns - 1
		// One process holds them all: no per-process cap.
		args = []string{"--max-connections-per-process", "0"}
	}
	raiseNoFile(t, uint64(2*held+1024))
	a := startAgent(t, agentOpts{args: args})
	pub := residentKey(t, a)
	stop := make(chan struct{})
	s := startSigner(t, a, pub, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	// One client per connection: x/crypto's client reads replies in a
	// goroutine of its own, so two clients on one connection would steal
	// each other's replies.
	conns := make([]net.Conn, 0, held)
	clients := make([]sshagent.ExtendedAgent, 0, held)
	for i := range held {
		c, err := net.Dial("unix", a.Socket)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, held, err)
		}
		t.Cleanup(func() { c.Close() })
		ag := sshagent.NewClient(c)
		conns, clients = append(conns, c), append(clients, ag)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := ag.List(); err != nil {
			t.Fatalf("connection %d of %d (below the limit of %d) not served: %v", i+1, held, agent.DefaultMaxConns, err)
		}
	}
	// All still open and served, the signer still going.
	before := s.ok.Load()
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := clients[i].List(); err != nil {
			t.Fatalf("held connection %d stopped being served: %v", i+1, err)
		}
	}
	if longLoad() {
		c, err := net.Dial("unix", a.Socket)
		if err != nil {
			t.Fatalf("dial over the limit: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("connection over the limit of %d: read %d bytes, %v; want end-of-file", agent.DefaultMaxConns, n, err)
		}
		c.Close()
	}
	close(stop)
	<-s.done
	if s.err != nil {
		t.Fatalf("the signing client failed while %d connections were held: %v", held, s.err)
	}
	if s.ok.Load() == 0 || s.ok.Load() == before {
		t.Fatalf("the signing client made %d signatures (%d before the re-check): it must keep signing while connections are held", s.ok.Load(), before)
	}
	t.Logf("%d connections held; %d signatures meanwhile", held, s.ok.Load())
}

// TestHalfFrameStallProcess: clients that send part of a frame and stall
// do not delay others: another client's requests keep completing and new
// connections are served.
func TestHalfFrameStallProcess(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	a := startAgent(t, agentOpts{})
	pub := residentKey(t, a)
	stalls := [][]byte{
		{0, 0, 0, 100, 11}, // header promises 100 bytes, 1 sent
		{0, 0},             // half a header
		{0, 0, 0, 69, 13, 0, 0, 0, 51, 0, 0, 0, 11, 's', 's', 'h'}, // sign request cut in the key blob
	}
	stalled := 0
	for range 20 {
		for _, b := range stalls {
			c := a.rawConn()
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			stalled++
		}
	}
	c := a.rawConn()
	good := sshagent.NewClient(c)
	for i := range 200 {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := good.Sign(pub, []byte("data")); err != nil {
			t.Fatalf("sign %d with %d stalled clients connected: %v", i+1, stalled, err)
		}
	}
	fresh := a.rawConn()
	fresh.SetDeadline(time.Now().Add(10 * time.Second))
	if keys, err := sshagent.NewClient(fresh).List(); err != nil || len(keys) != 1 {
		t.Fatalf("new connection with %d stalled clients connected: %d keys, %v", stalled, len(keys), err)
	}
}

// mixedLoad sends n mixed requests over conns connections, checking every
// reply: list (the resident key is there), sign with the resident key
// (the signature verifies), add a throwaway key / sign with it / remove it
// / sign again (refused), and an unknown extension (SSH_AGENT_FAILURE).
// It returns how many sign requests were allowed and refused.
func mixedLoad(t testing.TB, a *agentProc, resident ssh.PublicKey, conns, n int) (allowed, denied int64) {
	t.Helper()
	var nAllowed, nDenied atomic.Int64
	data := bytes.Repeat([]byte{0x5a}, 64)
	per := n / conns
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		_, throw, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		throwPub, err := ssh.NewPublicKey(throw.Public())
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", a.Socket)
		if err != nil {
			t.Fatal(err)
		}
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
					nAllowed.Add(1)
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
					nAllowed.Add(1)
					if err := ag.Remove(throwPub); err != nil {
						fail(i+2, "remove: %v", err)
						return
					}
					if _, err := ag.Sign(throwPub, data); err == nil {
						fail(i+3, "sign with a removed key succeeded")
						return
					}
					nDenied.Add(1)
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
	return nAllowed.Load(), nDenied.Load()
}

// auditSigns counts the sign records in the agent's audit log (rotated
// files included) by decision.
func auditSigns(t testing.TB, a *agentProc) (allowed, denied int64) {
	t.Helper()
	files, _ := filepath.Glob(a.Audit + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var r struct{ Event, Decision string }
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("audit log %s: %v: %q", f, err, line)
			}
			switch {
			case r.Event == "sign" && r.Decision == "allowed":
				allowed++
			case r.Event == "sign":
				denied++
			}
		}
	}
	return allowed, denied
}

// TestMixedLoad: 10,000 mixed requests (long run: 100,000) over 16
// connections against the real binary, every reply correct; afterwards
// the agent has no more file descriptors open than before, and its
// thread count does not grow with the number of requests (Go keeps idle
// threads, so the check is: a second round adds no threads to the first).
// Goroutines cannot be counted from outside: agent.TestMixedLoadNoLeak
// counts them in process.
func TestMixedLoad(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	n := 10_000
	if longLoad() {
		n = 100_000
	}
	a := startAgent(t, agentOpts{})
	fds := a.fds() // before any connection
	pub := residentKey(t, a)
	ok1, no1 := mixedLoad(t, a, pub, 16, n/2)
	if t.Failed() {
		return
	}
	a.waitFDs(fds, fmt.Sprintf("after %d mixed requests", n/2))
	threads := a.threads()
	ok2, no2 := mixedLoad(t, a, pub, 16, n/2)
	if t.Failed() {
		return
	}
	a.waitFDs(fds, fmt.Sprintf("after %d mixed requests", n))
	if th := a.threads(); th > threads+8 {
		t.Errorf("the agent's threads grew from %d to %d over the second %d requests: a thread leak", threads, th, n/2)
	}
	// One audit record per sign decision, none lost under load.
	if ok, no := auditSigns(t, a); ok != ok1+ok2 || no != no1+no2 {
		t.Errorf("audit log has %d allowed and %d refused sign records; the clients saw %d and %d", ok, no, ok1+ok2, no1+no2)
	}
	out := a.mustRun("ssh-add", "-l")
	if !strings.Contains(out, "resident") {
		t.Errorf("after the load ssh-add -l shows %q, want the resident key", out)
	}
}
