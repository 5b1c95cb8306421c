package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the safe-agent binary built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "safe-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	args := []string{"build", "-o", filepath.Join(dir, "safe-agent")}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/safe-agent")...)
	// The agent as it should ship: runtime/secret erases the heap copies
	// signing makes (TestMemoryScanStoredKey counts them).
	exp := "runtimesecret"
	if e := os.Getenv("GOEXPERIMENT"); e != "" {
		exp = e + "," + exp
	}
	build.Env = append(os.Environ(), "GOEXPERIMENT="+exp)
	if !raceEnabled {
		// Static, as README's install builds it; -race needs cgo.
		build.Env = append(build.Env, "CGO_ENABLED=0")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build safe-agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func agentBin() string { return filepath.Join(binDir, "safe-agent") }

// need makes sure an external program exists: a failure under CI=true,
// a skip naming the Debian package otherwise.
func need(t testing.TB, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err == nil {
		return p
	}
	if _, serr := os.Stat(prog); serr == nil {
		return prog
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: install the Debian package %s", prog, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s (apt-get install %s)", prog, pkg, pkg)
	return ""
}

// shortTempDir is a private directory with a short path: unix socket
// paths are limited to 108 bytes and t.TempDir() paths can be long.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sa-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// agentProc is a running safe-agent.
type agentProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	Socket string
	Audit  string
	Home   string
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

type agentOpts struct {
	policy string   // policy file contents ("" = none: built-in defaults)
	socket string   // socket path ("" = a fresh private one)
	args   []string // extra serve flags
	env    []string
}

// startAgent runs `safe-agent serve --keystore none` on a private socket
// and waits for the SSH_AUTH_SOCK line.
func startAgent(t testing.TB, o agentOpts) *agentProc {
	t.Helper()
	dir := shortTempDir(t)
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "run"), filepath.Join(dir, "config"), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	a := &agentProc{t: t, Socket: filepath.Join(dir, "run", "agent.sock"), Audit: filepath.Join(dir, "state", "audit.jsonl"), Home: home, stderr: newSyncBuffer(), done: make(chan struct{})}
	if o.socket != "" {
		a.Socket = o.socket
	}
	args := []string{"serve", "--keystore", "none", "--socket", a.Socket, "--audit-log", a.Audit}
	if o.policy != "" {
		pf := filepath.Join(dir, "config", "policy.toml")
		if err := os.WriteFile(pf, []byte(o.policy), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--policy", pf)
	}
	args = append(args, o.args...)
	cmd := exec.Command(agentBin(), args...)
	cmd.Env = append(baseEnv(home, dir), o.env...)
	cmd.Stderr = a.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		l, _ := r.ReadString('\n')
		line <- l
		_, _ = r.WriteTo(io_discard{})
	}()
	go func() { _ = cmd.Wait(); close(a.done) }()
	select {
	case l := <-line:
		want := fmt.Sprintf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", a.Socket)
		if l != want {
			a.stop()
			t.Fatalf("agent printed %q, want %q; stderr:\n%s", l, want, a.stderr.String())
		}
	case <-time.After(15 * time.Second):
		a.stop()
		t.Fatalf("agent did not start; stderr:\n%s", a.stderr.String())
	}
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	return a
}

type io_discard struct{}

func (io_discard) Write(p []byte) (int, error) { return len(p), nil }

// baseEnv is a clean environment: no inherited agent, no desktop.
func baseEnv(home, dir string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_STATE_HOME=" + filepath.Join(dir, "state"),
		"LANG=C.UTF-8",
	}
}

// stop sends SIGTERM and waits for the agent to exit.
func (a *agentProc) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// exited reports the exit status once the agent stopped.
func (a *agentProc) waitExit(d time.Duration) (int, bool) {
	select {
	case <-a.done:
		return a.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

func (a *agentProc) env() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + a.Home, "SSH_AUTH_SOCK=" + a.Socket, "LANG=C.UTF-8"}
}

// run runs a command against the agent and returns its combined output
// and exit status.
func (a *agentProc) run(name string, args ...string) (string, int) {
	a.t.Helper()
	return runEnv(a.t, a.env(), "", name, args...)
}

func runEnv(t testing.TB, env []string, stdin string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out; output:\n%s", name, args, out)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// mustRun fails the test unless the command exits 0.
func (a *agentProc) mustRun(name string, args ...string) string {
	a.t.Helper()
	out, code := a.run(name, args...)
	if code != 0 {
		a.t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

// newKey writes a fresh unencrypted key pair with ssh-keygen.
func newKey(t testing.TB, dir, name, typ string, bits int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	args := []string{"-q", "-t", typ, "-N", "", "-C", name, "-f", path}
	if bits > 0 {
		args = append(args, "-b", fmt.Sprint(bits))
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	return path
}

// keyTypes are the key types users add, with ssh-keygen's flags.
var keyTypes = []struct {
	name string
	typ  string
	bits int
}{
	{"ed25519", "ed25519", 0},
	{"ecdsa256", "ecdsa", 256},
	{"ecdsa384", "ecdsa", 384},
	{"ecdsa521", "ecdsa", 521},
	{"rsa3072", "rsa", 3072},
}

// rawConn dials the agent socket directly.
func (a *agentProc) rawConn() net.Conn {
	a.t.Helper()
	c, err := net.Dial("unix", a.Socket)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { c.Close() })
	return c
}

// needRoot is need for root: some tests run processes as another user or
// read another process's memory. Under CI=true its absence is a failure.
func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root to %s: CI runs the tests as root", why)
	}
	t.Skipf("needs root to %s (run the tests as root)", why)
}

// needDevFull is need for /dev/full, the disk-full stand-in.
func needDevFull(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/full"); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no /dev/full: the disk-full test needs it")
	}
	t.Skip("no /dev/full: the disk-full test needs it")
}
