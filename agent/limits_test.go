package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/notify"
)

// TestResolveLimits: zero values take the defaults, negative ones switch
// a limit off, and the reserve scales down with a small global cap.
func TestResolveLimits(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want connLimits
	}{
		{Options{}, connLimits{total: 4096, reserve: 64, perProcess: 1024, perPath: 256, idle: 10 * time.Minute}},
		{Options{MaxConns: 512}, connLimits{total: 512, reserve: 8, perProcess: 1024, perPath: 256, idle: 10 * time.Minute}},
		{Options{MaxConns: 10}, connLimits{total: 10, reserve: 0, perProcess: 1024, perPath: 256, idle: 10 * time.Minute}},
		{Options{MaxConns: 4, ReservedConns: 9}, connLimits{total: 4, reserve: 3, perProcess: 1024, perPath: 256, idle: 10 * time.Minute}},
		{Options{MaxConnsPerProcess: -1, MaxConnsPerPath: -1, ReservedConns: -1, IdleTimeout: -1}, connLimits{total: 4096}},
		{Options{MaxConnsPerProcess: 7, MaxConnsPerPath: 3, IdleTimeout: time.Second}, connLimits{total: 4096, reserve: 64, perProcess: 7, perPath: 3, idle: time.Second}},
	} {
		if got := resolveLimits(tt.o); got != tt.want {
			t.Errorf("resolveLimits(%+v) = %+v, want %+v", tt.o, got, tt.want)
		}
	}
}

// TestAdmit: the per-process cap, the global cap, and the reserve that
// only a process with no connection open may take.
func TestAdmit(t *testing.T) {
	s := New(Options{MaxConns: 20, ReservedConns: 4, MaxConnsPerProcess: 10})
	defer s.Shutdown(t.Context())
	admit := func(pid, n int, want string) {
		t.Helper()
		for i := range n {
			got := s.admit(pid)
			if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
				t.Fatalf("connection %d of pid %d: refused %q, want %q", i+1, pid, got, want)
			}
		}
	}
	admit(1, 10, "")
	admit(1, 1, "too many connections from this process (10 open; limit 10 per process)")
	admit(2, 6, "") // 16 open: the last 4 are the reserve
	admit(2, 1, "the last 4 of 20 are kept for processes with no connection open, and this one has 6")
	admit(1, 1, "too many connections from this process")
	for pid := 3; pid <= 6; pid++ {
		admit(pid, 1, "") // a first connection may use the reserve
	}
	admit(7, 1, "too many connections (limit 20)")
	s.release(3, "")
	admit(3, 1, "") // its slot is free again
	s.release(2, "")
	admit(2, 1, "the last 4 of 20 are kept") // 19 open: still within the reserve
	admit(8, 1, "")
	if s.open != 20 || s.perPID[1] != 10 || s.perPID[2] != 5 {
		t.Errorf("open %d, pid 1 %d, pid 2 %d; want 20, 10, 5", s.open, s.perPID[1], s.perPID[2])
	}
}

// TestForwardOrigin: the path a forwarded connection counts against ends
// at its first forwarding hop, so hops the far end appends (with host
// keys it made up) do not give it a fresh path.
func TestForwardOrigin(t *testing.T) {
	jump, other := btKey(t, "ed25519").PublicKey(), btKey(t, "p256").PublicKey()
	made := ltPub(t, ltKey(t))
	fp := ssh.FingerprintSHA256
	for _, tt := range []struct {
		hops []sshwire.Hop
		want string
	}{
		{nil, ""},
		{[]sshwire.Hop{{HostKey: jump}}, ""},
		{[]sshwire.Hop{{HostKey: jump, Forwarded: true}}, fp(jump)},
		{[]sshwire.Hop{{HostKey: jump, Forwarded: true}, {HostKey: made}}, fp(jump)},
		{[]sshwire.Hop{{HostKey: jump, Forwarded: true}, {HostKey: made, Forwarded: true}, {HostKey: other}}, fp(jump)},
		{[]sshwire.Hop{{HostKey: other}, {HostKey: jump, Forwarded: true}}, fp(other) + ">" + fp(jump)},
	} {
		if got := forwardOrigin(tt.hops); got != tt.want {
			t.Errorf("forwardOrigin(%d hops) = %q, want %q", len(tt.hops), got, tt.want)
		}
	}
}

// syncBuf is a log sink safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func limLogger(buf *syncBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// limAudit reads the audit records of event.
func limAudit(t *testing.T, path, event string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Bytes(), err)
		}
		if r.Event == event {
			out = append(out, r)
		}
	}
	return out
}

// limBind sends a session-bind of host key signer over sid.
func limBind(t *testing.T, ag sshagent.ExtendedAgent, host ssh.Signer, sid string, fwd bool) error {
	t.Helper()
	payload := btPayload(host.PublicKey(), []byte(sid), btSign(t, host, "", []byte(sid)), fwd)
	_, err := ag.Extension(extSessionBind, payload)
	return err
}

// TestPerPathCap: connections bound as forwarded through one path are
// capped; the one over the cap gets a failure for its bind, is closed,
// and leaves a log line and a connection-refused audit record naming the
// path. Hops the far end appends do not escape the cap; another path and
// local connections are unaffected; a closed connection frees its slot.
func TestPerPathCap(t *testing.T) {
	ltQuietLog(t)
	const limit = 3
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	logs := &syncBuf{}
	_, sock := ltServer(t, Options{MaxConnsPerPath: limit, Audit: al, Logger: limLogger(logs)})
	jump, jump2 := btKey(t, "ed25519"), btKey(t, "p256")

	var held []net.Conn
	for i := range limit {
		c := ltDial(t, sock)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ag := sshagent.NewClient(c)
		if err := limBind(t, ag, jump, fmt.Sprintf("jump-session-%d", i), true); err != nil {
			t.Fatalf("forwarded connection %d of %d: bind refused: %v", i+1, limit, err)
		}
		// What the far end appends: a host key it made up.
		made, err := ssh.NewSignerFromKey(ltKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := limBind(t, ag, made, fmt.Sprintf("made-up-%d", i), false); err != nil {
			t.Fatalf("connection %d: second hop refused: %v", i+1, err)
		}
		if _, err := ag.List(); err != nil {
			t.Fatalf("forwarded connection %d of %d not served: %v", i+1, limit, err)
		}
		held = append(held, c)
	}

	over := ltDial(t, sock)
	over.SetDeadline(time.Now().Add(10 * time.Second))
	ag := sshagent.NewClient(over)
	if err := limBind(t, ag, jump, "jump-session-over", true); err == nil {
		t.Fatal("bind over the path cap succeeded")
	}
	if n, err := over.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("connection over the path cap: read %d bytes, %v; want end-of-file", n, err)
	}

	// Another forwarded path and a local connection still work.
	c2 := ltDial(t, sock)
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	ag2 := sshagent.NewClient(c2)
	if err := limBind(t, ag2, jump2, "jump2-session", true); err != nil {
		t.Fatalf("another path refused: %v", err)
	}
	if _, err := ag2.List(); err != nil {
		t.Fatalf("another path not served: %v", err)
	}
	local := ltDial(t, sock)
	local.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := sshagent.NewClient(local).List(); err != nil {
		t.Fatalf("local connection not served: %v", err)
	}

	recs := limAudit(t, auditPath, "connection-refused")
	if len(recs) != 1 {
		t.Fatalf("%d connection-refused records, want 1", len(recs))
	}
	r := recs[0]
	if r.Decision != "denied" || r.Reason != fmt.Sprintf("too many connections through this forwarded path (%d open; limit %d per path)", limit, limit) {
		t.Errorf("record: decision %q, reason %q", r.Decision, r.Reason)
	}
	if len(r.Path) != 1 || r.Path[0].Fingerprint != ssh.FingerprintSHA256(jump.PublicKey()) || !r.Path[0].Forwarded {
		t.Errorf("record path %+v, want the forwarded jump hop", r.Path)
	}
	if r.Client == nil || r.Client.PID != os.Getpid() {
		t.Errorf("record client %+v, want pid %d", r.Client, os.Getpid())
	}
	if !strings.Contains(logs.String(), "connection refused: too many connections through this forwarded path") {
		t.Errorf("no log line for the refusal:\n%s", logs.String())
	}

	// Closing one frees its slot on the path.
	held[0].Close()
	ltWaitFor(t, "the closed connection's path slot to be freed", func() bool {
		c := ltDial(t, sock)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return limBind(t, sshagent.NewClient(c), jump, fmt.Sprintf("jump-retry-%d", time.Now().UnixNano()), true) == nil
	})
}

// TestRefusalLogRateLimited: a flood of refused connections writes one
// line and one record per process per interval, then says how many went
// unwritten.
func TestRefusalLogRateLimited(t *testing.T) {
	ltQuietLog(t)
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	logs := &syncBuf{}
	clock := &ltClock{t: time.Now()}
	_, sock := ltServer(t, Options{MaxConnsPerProcess: 2, Audit: al, Logger: limLogger(logs), Now: clock.Now})
	ltDial(t, sock)
	ltDial(t, sock)
	refusedOne := func() {
		t.Helper()
		c := ltDial(t, sock)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection over the per-process cap: read %d, %v; want end-of-file", n, err)
		}
	}
	for range 50 {
		refusedOne()
	}
	clock.Add(refusalInterval)
	refusedOne()
	// The refused client sees end-of-file first; the record follows.
	var recs []audit.Record
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		recs = limAudit(t, auditPath, "connection-refused")
		if len(recs) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(recs) != 2 {
		t.Fatalf("%d records for 51 refusals, want 2", len(recs))
	}
	if want := "too many connections from this process (2 open; limit 2 per process)"; recs[0].Reason != want || recs[0].Detail != "" {
		t.Errorf("first record: reason %q detail %q, want %q", recs[0].Reason, recs[0].Detail, want)
	}
	if recs[1].Detail != "49 more refused since the last record" {
		t.Errorf("second record detail %q", recs[1].Detail)
	}
	if n := strings.Count(logs.String(), "connection refused: too many connections from this process"); n != 2 {
		t.Errorf("%d log lines for 51 refusals, want 2:\n%s", n, logs.String())
	}
}

// ltClock is a settable clock.
type ltClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *ltClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *ltClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestIdleTimeout: a connection that sends nothing, or stalls in the
// middle of a frame, is closed after the idle timeout with a log line; one
// that keeps sending requests stays; and one whose request waits on a
// prompt for longer than the timeout is not idle, gets its answer, and
// only then starts counting again.
func TestIdleTimeout(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sh not found: needed for the fake prompt program (Debian package dash)")
		}
		t.Skip("sh not found: needed for the fake prompt program (Debian package dash)")
	}
	ltQuietLog(t)
	const idle = 300 * time.Millisecond
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	// A person who takes three idle timeouts to say yes.
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nsleep 1\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	_, sock := ltServer(t, Options{IdleTimeout: idle, Logger: limLogger(logs),
		PromptEnv: notify.Env{Display: ":test", SSHAskpass: askpass, Path: os.Getenv("PATH")}})
	k := ltKey(t)
	pub := ltPub(t, k)

	silent := ltDial(t, sock)
	stalled := ltDial(t, sock)
	if _, err := stalled.Write([]byte{0, 0, 0, 100, 11}); err != nil {
		t.Fatal(err)
	}
	// A request waiting a second on a prompt is not idleness.
	busyAg := sshagent.NewClient(ltDial(t, sock))
	if err := busyAg.Add(sshagent.AddedKey{PrivateKey: k, ConfirmBeforeUse: true}); err != nil {
		t.Fatal(err)
	}
	signed := make(chan error, 1)
	go func() {
		sig, err := busyAg.Sign(pub, []byte("data"))
		if err == nil {
			err = pub.Verify([]byte("data"), sig)
		}
		if err == nil {
			_, err = busyAg.List()
		}
		signed <- err
	}()
	start := time.Now()
	for _, c := range []net.Conn{silent, stalled} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: read %d, %v; want end-of-file", n, err)
		}
	}
	if d := time.Since(start); d < idle-50*time.Millisecond || d > 5*time.Second {
		t.Errorf("idle connections closed after %v; idle timeout %v", d, idle)
	}

	// Requests every third of the timeout keep a connection open.
	active := sshagent.NewClient(ltDial(t, sock))
	for i := range 10 {
		if _, err := active.List(); err != nil {
			t.Fatalf("active connection, request %d: %v", i+1, err)
		}
		time.Sleep(idle / 3)
	}

	if err := <-signed; err != nil {
		t.Fatalf("sign through a prompt longer than the idle timeout, then list: %v", err)
	}

	if n := strings.Count(logs.String(), "connection closed: idle"); n < 2 {
		t.Errorf("%d idle log lines, want one per idle connection (2+):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "idle_for="+idle.String()) {
		t.Errorf("idle log line lacks the timeout:\n%s", logs.String())
	}
}
