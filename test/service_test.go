package test

import (
	"bufio"
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

// serviceEnv is a fresh user with no user systemd to talk to:
// XDG_RUNTIME_DIR has no systemd/private socket and the session bus
// address leads nowhere, so `systemctl --user` fails as it does in a
// container or a test.
func serviceEnv(dir string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"XDG_STATE_HOME=" + filepath.Join(dir, "state"),
		"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-bus"),
		"SHELL=/bin/bash",
		"LANG=C.UTF-8",
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// TestServiceInstallUnits: `service install` writes the systemd user units
// for this binary into $XDG_CONFIG_HOME/systemd/user, they pass
// `systemd-analyze --user verify` without a single warning, --print shows
// exactly what is written, and status/uninstall report and remove them.
func TestServiceInstallUnits(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	dir := shortTempDir(t)
	mkdirs(t, filepath.Join(dir, "home"), filepath.Join(dir, "run"), filepath.Join(dir, "config"))
	env := serviceEnv(dir)
	unitDir := filepath.Join(dir, "config", "systemd", "user")
	sock, svc := filepath.Join(unitDir, "safe-agent.socket"), filepath.Join(unitDir, "safe-agent.service")

	out, code := runEnv(t, env, "", agentBin(), "service", "install")
	for _, want := range []string{
		"Wrote " + sock + "\n", "Wrote " + svc + "\n",
		"Enabling skipped: no user systemd to talk to (systemctl --user: ",
		"systemctl --user daemon-reload && systemctl --user enable --now safe-agent.socket",
		"Add this line to ~/.bashrc (or ~/.profile) so that every new shell uses the agent:\n  eval \"$(",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("service install output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("service install without a user systemd: exit %d, want 0 (files written, enabling skipped)\n%s", code, out)
	}
	svcText, err := os.ReadFile(svc)
	if err != nil {
		t.Fatal(err)
	}
	if want := "\nExecStart=" + agentBin() + " serve\n"; !strings.Contains(string(svcText), want) {
		t.Errorf("service unit lacks %q:\n%s", want, svcText)
	}

	// The units are valid for a user manager: no errors and no warnings
	// (unknown keys, bad values and a missing binary all print something).
	verify := func(files ...string) (string, int) {
		return runEnv(t, env, "", analyze, append([]string{"--user", "verify"}, files...)...)
	}
	if out, code := verify(sock, svc); code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze --user verify: exit %d, want 0 and no output:\n%s", code, out)
	}
	// The same check notices a broken unit, so the one above means something.
	badDir := filepath.Join(dir, "bad")
	mkdirs(t, badDir)
	bad := strings.Replace(string(svcText), "LimitMEMLOCK=", "LimitMEMLOCK=lots", 1)
	bad = strings.Replace(bad, "ExecStart="+agentBin(), "ExecStart="+filepath.Join(dir, "no-such-binary"), 1)
	os.WriteFile(filepath.Join(badDir, "safe-agent.service"), []byte(bad), 0o644)
	sockText, _ := os.ReadFile(sock)
	os.WriteFile(filepath.Join(badDir, "safe-agent.socket"), sockText, 0o644)
	if out, code := verify(filepath.Join(badDir, "safe-agent.socket"), filepath.Join(badDir, "safe-agent.service")); code == 0 || !strings.Contains(out, "Failed to parse resource value") || !strings.Contains(out, "no-such-binary") {
		t.Errorf("systemd-analyze accepted a broken unit: exit %d\n%s", code, out)
	}

	// --print shows what install writes, and writes nothing.
	out, code = runEnv(t, env, "", agentBin(), "service", "install", "--print")
	if want := fmt.Sprintf("# %s\n%s\n# %s\n%s", sock, sockText, svc, svcText); code != 0 || out != want {
		t.Errorf("install --print: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	// Again with --no-enable: nothing changes, nothing is enabled.
	out, code = runEnv(t, env, "", agentBin(), "service", "install", "--no-enable")
	if code != 0 || !strings.Contains(out, "Unchanged "+sock) || !strings.Contains(out, "Not enabled (--no-enable).") {
		t.Errorf("install --no-enable: exit %d\n%s", code, out)
	}
	out, code = runEnv(t, env, "", agentBin(), "service", "status")
	if code != 0 || !strings.Contains(out, sock+": installed, up to date") || !strings.Contains(out, svc+": installed, up to date") {
		t.Errorf("service status: exit %d\n%s", code, out)
	}
	// Nothing runs the units here: status says so, and how to start it.
	out, code = runEnv(t, env, "", agentBin(), "status")
	if want := "safe-agent: no agent answers on " + filepath.Join(dir, "run", "safe-agent", "agent.sock") + ": start it with `safe-agent serve` (or `safe-agent service install`)"; code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("safe-agent status with no agent: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	out, code = runEnv(t, env, "", agentBin(), "service", "uninstall")
	if code != 0 || !strings.Contains(out, "Removed "+sock) || !strings.Contains(out, "Removed "+svc) {
		t.Errorf("service uninstall: exit %d\n%s", code, out)
	}
	for _, f := range []string{sock, svc} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s still there after uninstall", f)
		}
	}
	out, code = runEnv(t, env, "", agentBin(), "service", "status")
	if code != 1 || !strings.Contains(out, "the service is not installed: run `safe-agent service install`") {
		t.Errorf("service status after uninstall: exit %d, want 1\n%s", code, out)
	}
}

// activatedAgent is `safe-agent serve` started the way systemd starts it
// from safe-agent.socket: the listening socket as fd 3, LISTEN_FDS=1 and
// LISTEN_PID set to the agent's own pid (by the shell that execs it).
type activatedAgent struct {
	cmd    *exec.Cmd
	line   string // first line on stdout
	stderr *syncBuffer
	done   chan struct{}
}

func startActivated(t *testing.T, listener *os.File, listenPID string, env []string, args ...string) *activatedAgent {
	t.Helper()
	return startActivatedArgv(t, listener, listenPID, env, append([]string{agentBin(), "serve"}, args...))
}

// startActivatedArgv runs argv (ExecStart=) as systemd would.
func startActivatedArgv(t *testing.T, listener *os.File, listenPID string, env []string, argv []string) *activatedAgent {
	t.Helper()
	if listenPID == "" {
		listenPID = "$$"
	}
	script := `LISTEN_PID=` + listenPID + `; export LISTEN_PID; exec "$0" "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script}, argv...)...)
	cmd.Env = append(append([]string{}, env...), "LISTEN_FDS=1", "LISTEN_FDNAMES=safe-agent.socket")
	cmd.ExtraFiles = []*os.File{listener} // fd 3
	a := &activatedAgent{cmd: cmd, stderr: newSyncBuffer(), done: make(chan struct{})}
	cmd.Stderr = a.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(a.done) }()
	t.Cleanup(func() { a.stop(t) })
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadString('\n')
		lines <- l
		_, _ = r.WriteTo(io_discard{})
	}()
	select {
	case a.line = <-lines:
	case <-time.After(15 * time.Second):
		t.Fatalf("activated agent did not start:\n%s", a.stderr.String())
	}
	return a
}

func (a *activatedAgent) stop(t *testing.T) int {
	select {
	case <-a.done:
		return a.cmd.ProcessState.ExitCode()
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("agent did not stop on SIGTERM:\n%s", a.stderr.String())
	}
	return a.cmd.ProcessState.ExitCode()
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket (%v)", path, fi.Mode())
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestSocketActivation: handed a listening socket the way systemd does,
// the agent serves on it (not on --socket), ssh-add works through it, and
// when the agent stops the socket stays: it belongs to systemd, which
// starts the agent again on the next connection.
func TestSocketActivation(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	dir := shortTempDir(t)
	home := filepath.Join(dir, "home")
	mkdirs(t, home, filepath.Join(dir, "run", "safe-agent"), filepath.Join(dir, "state"))
	sockPath := filepath.Join(dir, "run", "safe-agent", "agent.sock") // %t/safe-agent/agent.sock
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // like systemd: the file stays until the socket unit stops
	defer l.Close()
	os.Chmod(sockPath, 0o600)
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ino := inode(t, sockPath)

	env := append(baseEnv(home, dir), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
	unused := filepath.Join(dir, "unused", "agent.sock")
	a := startActivated(t, lf, "", env, "--keystore", "none", "--socket", unused)
	if want := fmt.Sprintf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", sockPath); a.line != want {
		t.Fatalf("activated agent printed %q, want %q\n%s", a.line, want, a.stderr.String())
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(a.stderr.String(), "passed by systemd (socket activation)"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the agent's log does not say it uses the socket systemd passed:\n%s", a.stderr.String())
			break
		}
	}
	clientEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "SSH_AUTH_SOCK=" + sockPath}
	key := newKey(t, t.TempDir(), "activated", "ed25519", 0)
	if out, code := runEnv(t, clientEnv, "", "ssh-add", key); code != 0 {
		t.Fatalf("ssh-add through the activated socket: exit %d\n%s", code, out)
	}
	out, code := runEnv(t, clientEnv, "", "ssh-add", "-l")
	if code != 0 || !strings.Contains(out, "activated (ED25519)") {
		t.Fatalf("ssh-add -l: exit %d\n%s", code, out)
	}
	out, code = runEnv(t, clientEnv, "", agentBin(), "status")
	if code != 0 || !strings.Contains(out, "socket:    "+sockPath+"\n") {
		t.Errorf("safe-agent status on the activated agent: exit %d\n%s", code, out)
	}
	if _, err := os.Lstat(unused); err == nil {
		t.Errorf("the agent created --socket %s although systemd passed one", unused)
	}

	if code := a.stop(t); code != 0 {
		t.Errorf("activated agent exit %d after SIGTERM\n%s", code, a.stderr.String())
	}
	if got := inode(t, sockPath); got != ino {
		t.Fatalf("the socket file was replaced (inode %d, was %d)", got, ino)
	}
	// systemd starts the service again on the next connection, with the
	// same listening socket: it still works (with no keys: memory only).
	b := startActivated(t, lf, "", env, "--keystore", "none")
	out, code = runEnv(t, clientEnv, "", "ssh-add", "-l")
	if code != 1 || !strings.Contains(out, "The agent has no identities.") {
		t.Errorf("ssh-add -l on the restarted agent: exit %d %q", code, out)
	}
	b.stop(t)
	if got := inode(t, sockPath); got != ino {
		t.Errorf("the socket file was replaced after the second agent (inode %d, was %d)", got, ino)
	}

	// LISTEN_PID names another process: the fds are not ours, and the
	// agent makes its own socket.
	own := filepath.Join(dir, "own", "agent.sock")
	c := startActivated(t, lf, "1", env, "--keystore", "none", "--socket", own)
	if want := fmt.Sprintf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", own); c.line != want {
		t.Errorf("agent with LISTEN_PID of another process printed %q, want %q", c.line, want)
	}
	c.stop(t)
	if _, err := os.Lstat(own); err == nil {
		t.Errorf("the agent's own socket %s was not removed at exit", own)
	}
}
