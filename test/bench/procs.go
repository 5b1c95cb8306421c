//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
)

// agentProc is one running agent (OpenSSH's or safe-agent).
type agentProc struct {
	name   string
	cmd    *exec.Cmd
	socket string
	stderr *os.File
	done   chan struct{}
}

// startProc starts cmd and waits until socket answers a list request.
func startProc(name string, cmd *exec.Cmd, socket, logPath string, timeout time.Duration) (*agentProc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so a Ctrl-C of the bench reaches us first and
	// we stop the agent cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &agentProc{name: name, cmd: cmd, socket: socket, stderr: lf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	if _, err := waitReady(socket, p.done, timeout); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, p.logTail(20))
	}
	return p, nil
}

// waitReady polls socket until a list request gets an answer; it returns
// the time that took.
func waitReady(socket string, exited <-chan struct{}, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		c, err := net.Dial("unix", socket)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(timeout))
			_, err = sshagent.NewClient(c).List()
			c.Close()
			if err == nil {
				return time.Since(start), nil
			}
		}
		select {
		case <-exited:
			return 0, errors.New("exited before its socket was ready")
		default:
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("socket %s not ready after %v: %v", socket, timeout, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (p *agentProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits (then SIGKILL).
func (p *agentProc) stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.stderr.Close()
}

func (p *agentProc) logTail(n int) string {
	b, _ := os.ReadFile(p.stderr.Name())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return p.name + " log (" + p.stderr.Name() + "):\n  " + strings.Join(lines, "\n  ")
}

// procStatus reads fields such as VmRSS and VmLck (in kB) from
// /proc/PID/status.
func procStatus(pid int, field string) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", field, v, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// safeAgentEnv is a private environment: nothing of the user's config,
// keyring or agent leaks in.
func safeAgentEnv(dir string, keepBus bool) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_STATE_HOME=" + filepath.Join(dir, "state"),
		"LANG=C.UTF-8",
	}
	if keepBus {
		env = append(env, "DBUS_SESSION_BUS_ADDRESS="+os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
	}
	for _, d := range []string{"home", "run", "config", "state"} {
		_ = os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	return env
}

// buildEnv is how README's install builds safe-agent; the bench measures
// that binary.
var buildEnv = []string{"GOEXPERIMENT=runtimesecret", "CGO_ENABLED=0"}

// buildSafeAgent builds ./cmd/safe-agent of the module the bench runs in,
// with buildEnv.
func buildSafeAgent(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the safe-agent module: run from the repository (go run ./test/bench) or pass -safe-agent PATH")
	}
	bin := filepath.Join(dir, "safe-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/safe-agent")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), buildEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/safe-agent: %w\n%s", err, out)
	}
	return bin, nil
}

// protections describes which of safe-agent's protections a bench run
// has on, from `serve --help` and what the running process shows.
type protections struct {
	keystore       string // value passed to --keystore ("" if no such flag)
	keystoreWhy    string
	lockedRequired bool // serve has --allow-unlocked-memory: locking is the default and we do not opt out
	extraFlags     []string
}

// detectProtections reads `safe-agent serve --help` and picks the fullest
// protection available. want is the -keystore flag (auto, none, keyring).
func detectProtections(bin, want string) (protections, error) {
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		return protections{}, fmt.Errorf("%s serve --help: %w\n%s", bin, err, out)
	}
	help := string(out)
	var p protections
	if strings.Contains(help, "--keystore") {
		hasKeyring := strings.Contains(help, "keyring")
		bus := os.Getenv("DBUS_SESSION_BUS_ADDRESS") != ""
		switch {
		case want == "none":
			p.keystore, p.keystoreWhy = "none", "-keystore none"
		case want == "keyring" || (want == "auto" && hasKeyring && bus):
			p.keystore, p.keystoreWhy = "keyring", "OS keyring over the session bus"
		default:
			p.keystore, p.keystoreWhy = "none", "no D-Bus session bus (run the bench inside dbus-run-session with gnome-keyring for -keystore keyring)"
		}
	}
	p.lockedRequired = strings.Contains(help, "--allow-unlocked-memory")
	// Future hardening switches, if serve grows them: turn them on.
	for _, f := range []string{"--lock-memory", "--mlock", "--harden"} {
		if strings.Contains(help, f+" ") {
			p.extraFlags = append(p.extraFlags, f)
		}
	}
	return p, nil
}

// serveArgs is the safe-agent command line for a bench run.
func (p protections) serveArgs(socket, auditLog, policy string) []string {
	args := []string{"serve", "--socket", socket, "--audit-log", auditLog}
	if p.keystore != "" {
		args = append(args, "--keystore", p.keystore)
	}
	if policy != "" {
		args = append(args, "--policy", policy)
	}
	return append(args, p.extraFlags...)
}

// countLines counts newline-terminated lines in the files matching glob.
func countLines(glob string) int {
	files, _ := filepath.Glob(glob)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			n += bytes.Count(b, []byte{'\n'})
		}
	}
	return n
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}
