//go:build linux

package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// fzSeeds are valid frames for every message type, as x/crypto's client
// and real OpenSSH send them, and malformed ones.
func fzSeeds(t testing.TB) [][]byte {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	edKey := ed25519.NewKeyFromSeed(seed)
	edPub, err := ssh.NewPublicKey(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	ecKey := fzECKey(t, "fuzz-ecdsa")
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
		t.Fatal("internal/sshwire/testdata/openssh92/capture.jsonl lacks the records the seeds need")
	}
	return seeds
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

// fzECKey is a P-256 key derived from label: seeds written to
// testdata/fuzz name keys, so every run (and every fuzz worker process)
// must derive the same ones.
func fzECKey(t testing.TB, label string) *ecdsa.PrivateKey {
	t.Helper()
	d := sha256.Sum256([]byte(label))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		t.Fatalf("P-256 key from %q: %v", label, err)
	}
	return k
}

// fzSplit cuts a stream into the request bodies ServeAgent reads, in
// order: it stops where the agent stops reading (an empty or oversized
// frame, or the end of the bytes).
func fzSplit(stream []byte) [][]byte {
	var out [][]byte
	for len(stream) >= 4 {
		l := binary.BigEndian.Uint32(stream)
		if l == 0 || l > maxFrame || uint64(len(stream)) < 4+uint64(l) {
			break
		}
		out = append(out, stream[4:4+l])
		stream = stream[4+l:]
	}
	return out
}

// fzWrongUnlocks counts the unlock requests in a stream that may carry a
// wrong passphrase for a lock set earlier in it. The agent answers each
// after a growing delay (0.1 s, 0.2 s, …, as OpenSSH's agent), so inputs
// with many of them take seconds: the count bounds the input's deadline
// and lets the fuzz target skip such inputs. It over-counts (a lock the
// agent refused still counts), never under-counts a lock it saw.
func fzWrongUnlocks(stream []byte) int {
	type pass struct{ Passphrase []byte }
	locked, n := false, 0
	var lockPass []byte
	for _, body := range fzSplit(stream) {
		var p pass
		switch body[0] {
		case 22: // SSH_AGENTC_LOCK
			if ssh.Unmarshal(body[1:], &p) == nil && !locked {
				locked, lockPass = true, p.Passphrase
			}
		case 23: // SSH_AGENTC_UNLOCK
			if ssh.Unmarshal(body[1:], &p) != nil || !locked {
				continue
			}
			if bytes.Equal(p.Passphrase, lockPass) {
				locked = false
			} else {
				n++
			}
		}
	}
	return n
}

// fzMaxWrongUnlocks is how many wrong unlocks an input may make: one
// exercises the delay (0.1 s); n cost 0.1 s × n(n+1)/2, so a mutant that
// repeats the unlock frame 20 times would take 21 s.
const fzMaxWrongUnlocks = 1

// fzInline is the largest input written before the server starts
// reading: the kernel holds it (a unix socket's default send buffer is
// 208 KiB), so the server finds every request there at once and never
// waits for the writer, and its replies wait in the kernel until the
// connection has ended. Waiting on each other would make the number of
// EAGAIN loops in net and internal/poll (instrumented code) vary from run
// to run, and the fuzzer would take that noise for new coverage.
const fzInline = 64 << 10

// fzSocketpair returns a connected pair of unix stream sockets: the
// client's end and the server's.
func fzSocketpair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	var ends [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("socketpair: %v", err)
		}
		ends[i] = c.(*net.UnixConn)
	}
	return ends[0], ends[1]
}

// fzAuditOptions keep the shared audit log quiet and small: no fsync on a
// timer (a background fsync lands in a random input's coverage), and
// rotation by count only, so a long run keeps at most two files.
func fzAuditOptions() audit.Options {
	return audit.Options{MaxSize: 8 << 20, Keep: 1, MinRetention: -1, SyncInterval: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler)}
}

// fzHarness runs fuzz inputs, each as the whole byte stream of one
// connection to a Server of its own.
//
// Why a Server per input and not one reset between inputs: New and
// Shutdown take about 5 µs of an input's 300-900 µs (BenchmarkFuzzInput's
// CPU profile; Shutdown only waits for the reaper goroutine, nothing is
// listening). The old target's time went to an audit log opened and
// closed per input, a listener and goroutine hand-offs per connection,
// mutants repeating a wrong unlock (0.1 s × n(n+1)/2), and go test's
// minimizing of each new input (see scripts/fuzz.sh). What is left is
// mostly syscalls: two socketpairs, one read and write per request, one
// write per audit record, and the host-key signature checks of binds.
// A fresh Server starts from empty state by construction (keys, lock,
// remembered answers, fatigue, audit budgets, connection counts, and
// whatever state is added later), where a reset has to name every field
// and silently misses the next one. The audit log and the policy are
// shared: an input cannot change the policy, and appending to one log is
// what the agent does all day.
type fzHarness struct {
	opts Options
	// preload adds the keys an input starts with (nil: none).
	preload func(testing.TB, *Server)
}

func newFzHarness(tb testing.TB, o Options) *fzHarness {
	tb.Helper()
	if o.Audit == nil {
		al, err := audit.Open(filepath.Join(tb.TempDir(), "audit.jsonl"), fzAuditOptions())
		if err != nil {
			tb.Fatalf("open the fuzz audit log: %v", err)
		}
		tb.Cleanup(func() { al.Close() })
		o.Audit = al
	}
	return &fzHarness{opts: o}
}

// fzQuick is how long an input normally takes at most; one that takes
// longer (a prompt, an unlock delay, replies larger than the socket
// buffer) gets its replies read while it runs.
const fzQuick = 250 * time.Millisecond

// serve runs one input on a fresh Server and returns the reply stream.
// It fails t if the server hangs (neither answers nor closes within
// limit), if a second connection is not served afterwards, if the
// connection counts do not return to zero, or if Shutdown does not
// complete. A panic in any handler kills the fuzz worker, which go test
// reports as a crash with the input. inspect, if not nil, looks at the
// server after the input and before Shutdown.
func (h *fzHarness) serve(t testing.TB, stream []byte, limit time.Duration, inspect func(*Server)) []byte {
	t.Helper()
	srv := New(h.opts)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown after the input: %v", err)
		}
	}()
	if h.preload != nil {
		h.preload(t, srv)
	}
	replies := fzExchange(t, srv, stream, limit)
	after := fzExchange(t, srv, fzFrame(11), 5*time.Second)
	if bodies := fzSplit(after); len(bodies) != 1 || bodies[0][0] != 12 {
		t.Fatalf("a second connection is not served after the input: reply % x, want one identities answer", after)
	}
	fzCheckAccounting(t, srv)
	if inspect != nil {
		inspect(srv)
	}
	return replies
}

// fzPeer is the client of every fuzz connection: this process's user,
// and a pid no process can have (above Linux's PID_MAX_LIMIT), so the
// agent's look-up of the client's process chain fails at once. Who the
// client is does not depend on the input, and reading this process's
// real chain (six /proc files) was a quarter of an input's time; the
// real path (SO_PEERCRED, /proc) is what TestMaxConns and the end-to-end
// tests use.
var fzPeer = peerInfo{PID: 1<<22 + 1, UID: os.Geteuid()}

// fzServeConn is what Server.accept does for a connection from fzPeer,
// run in this goroutine instead of a new one: the goroutine hand-offs
// (accept's goroutine, a waiter on the server's WaitGroup) cost as much
// as serving a short input. A panic in a handler is then a panic in the
// fuzz function, which go test reports with the input.
func fzServeConn(t testing.TB, srv *Server, uc *net.UnixConn) {
	t.Helper()
	if why := srv.admit(fzPeer.PID); why != "" {
		uc.Close()
		t.Fatalf("connection refused: %s", why)
	}
	srv.release(fzPeer.PID, srv.handle(uc, fzPeer))
}

// fzExchange serves stream as one connection on srv and returns
// everything the server wrote before it closed the connection. A server
// that neither answers nor closes within limit is a hang: the process
// panics with the input's size (the fuzzer reports it as a crasher).
func fzExchange(t testing.TB, srv *Server, stream []byte, limit time.Duration) []byte {
	t.Helper()
	client, server := fzSocketpair(t)
	defer client.Close()
	send := func() {
		_, _ = client.Write(stream)
		_ = client.CloseWrite()
	}
	if len(stream) <= fzInline {
		send() // all of it is in the kernel before the server reads
	} else {
		go send()
	}
	// A slow input (a prompt, an unlock delay) or replies that fill the
	// socket buffer: read the replies while the server works.
	drained := make(chan []byte, 1)
	slow := time.AfterFunc(fzQuick, func() {
		b, _ := io.ReadAll(client)
		drained <- b
	})
	hang := time.AfterFunc(limit, func() {
		panic(fmt.Sprintf("the server neither answered nor closed the connection within %v (%d-byte input)", limit, len(stream)))
	})
	// Deferred as well: after a panic in a handler (which go test
	// reports with the input) the timers must not fire during the next
	// input.
	defer hang.Stop()
	defer slow.Stop()
	fzServeConn(t, srv, server)
	hang.Stop()
	if !slow.Stop() {
		return <-drained // the server has closed its end: the reader ends
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	replies, err := io.ReadAll(client)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		// ECONNRESET: the server closed with input left unread (after
		// an oversized frame); every reply before it was read.
		t.Fatalf("read the replies: %v", err)
	}
	return replies
}

// fzCheckAccounting: once every connection has ended, nothing is counted
// against the limits any more. A slot that leaks per connection would
// lock the user out after enough of them (issue 11).
func fzCheckAccounting(t testing.TB, srv *Server) {
	t.Helper()
	srv.mu.Lock()
	open, pids, paths, conns := srv.open, len(srv.perPID), len(srv.perPath), len(srv.conns)
	srv.mu.Unlock()
	if open != 0 || pids != 0 || paths != 0 || conns != 0 {
		t.Fatalf("connection accounting after every connection ended: %d open, %d processes, %d forwarded paths, %d tracked; want all 0",
			open, pids, paths, conns)
	}
}

// fzServeInput is FuzzServeFrames' per input work (the benchmark runs it
// too): the stream on a fresh Server with no keys.
func fzServeInput(t testing.TB, h *fzHarness, stream []byte) []byte {
	t.Helper()
	wrong := fzWrongUnlocks(stream)
	if wrong > fzMaxWrongUnlocks {
		t.Skipf("%d unlocks with a wrong passphrase: the agent delays each one longer (0.1 s × n), which would stall the fuzzer", wrong)
	}
	limit := 5*time.Second + time.Duration(wrong*(wrong+1)/2)*100*time.Millisecond
	return h.serve(t, stream, limit, nil)
}

// FuzzServeFrames feeds arbitrary bytes as one connection's stream into a
// Server (a fresh one per input, so a lock or a key from one input does
// not change the next). The server must not panic or hang: the
// connection ends (the server closes after our end-of-file) before the
// deadline, a second connection is still served, the connection counts
// return to zero and Shutdown completes.
func FuzzServeFrames(f *testing.F) {
	ltQuietLog(f)
	for _, s := range fzSeeds(f) {
		f.Add(s)
	}
	h := newFzHarness(f, fzOptions(f))
	f.Fuzz(func(t *testing.T, stream []byte) {
		fzServeInput(t, h, stream)
	})
}

// BenchmarkFuzzInput feeds the seed corpora through the fuzz targets'
// per-input functions, for profiling (go test -fuzz cannot write a CPU
// profile):
//
//	go test ./agent/ -run '^$' -bench BenchmarkFuzzInput -cpuprofile cpu.out
func BenchmarkFuzzInput(b *testing.B) {
	ltQuietLog(b)
	b.Run("FuzzServeFrames", func(b *testing.B) {
		seeds := fzSeeds(b)
		h := newFzHarness(b, fzOptions(b))
		for i := 0; b.Loop(); i++ {
			fzServeInput(b, h, seeds[i%len(seeds)])
		}
	})
	b.Run("FuzzServeFramesForwarded", func(b *testing.B) {
		fx := newFzForwarded(b)
		seeds := fzForwardedSeeds(b, fx)
		for i := 0; b.Loop(); i++ {
			s := seeds[i%len(seeds)]
			fzForwardedInput(b, fx, s.login, s.rest)
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

// fzSeedNames name fzSeeds in testdata/fuzz/FuzzServeFrames.
var fzSeedNames = []string{
	"list", "add-list-sign-remove", "ecdsa-confirm-lifetime-remove-all", "ssh-add-h-restricted", "key-settings",
	"lock-unlock", "extensions", "openssh92-binds-login", "truncated-header", "short-body", "empty-frame",
	"oversized-frame", "one-over-max-frame", "unknown-type", "truncated-sign", "truncated-add",
	"remove-trailing-byte", "truncated-extension", "list-trailing-garbage",
}

// fzSeedFiles are the seed corpus files of both connection targets, as go
// test's fuzz format writes them, by path.
func fzSeedFiles(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	seeds := fzSeeds(t)
	if len(seeds) != len(fzSeedNames) {
		t.Fatalf("%d seeds but %d names in fzSeedNames", len(seeds), len(fzSeedNames))
	}
	for i, s := range seeds {
		files[filepath.Join("testdata", "fuzz", "FuzzServeFrames", fzSeedNames[i])] = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
	}
	fx := newFzForwarded(t)
	for _, s := range fzForwardedSeeds(t, fx) {
		files[filepath.Join("testdata", "fuzz", "FuzzServeFramesForwarded", s.name)] = fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", s.login, s.rest)
	}
	return files
}

// TestFuzzSeedFiles keeps testdata/fuzz in step with the seeds built here
// (which f.Add adds too): every seed is on disk as go test reads it.
// SAFE_AGENT_WRITE_FUZZ_SEEDS=1 writes them.
func TestFuzzSeedFiles(t *testing.T) {
	write := os.Getenv("SAFE_AGENT_WRITE_FUZZ_SEEDS") == "1"
	for path, want := range fzSeedFiles(t) {
		if write {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or out of date (%v): run SAFE_AGENT_WRITE_FUZZ_SEEDS=1 go test ./agent/ -run TestFuzzSeedFiles", path, err)
		}
	}
}
