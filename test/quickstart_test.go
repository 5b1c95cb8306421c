package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// readmeBlock is one fenced block of README.md: its info string (after the
// backticks, e.g. "sh quickstart") and its text.
type readmeBlock struct {
	info string
	text string
	line int // line of the opening fence
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	var cur *readmeBlock
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &readmeBlock{info: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	return out
}

var heredocRE = regexp.MustCompile(`<<-?\s*'?"?([A-Za-z_]+)'?"?`)

// shellCommands splits a block into commands: one per line, a here-document
// with the line that starts it, and lines ending in a backslash with the next.
func shellCommands(block string) []string {
	lines := strings.Split(strings.TrimRight(block, "\n"), "\n")
	var cmds []string
	for i := 0; i < len(lines); i++ {
		cmd := lines[i]
		if strings.TrimSpace(cmd) == "" {
			continue
		}
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd += "\n" + lines[i]
		}
		if m := heredocRE.FindStringSubmatch(cmd); m != nil {
			for i+1 < len(lines) {
				i++
				cmd += "\n" + lines[i]
				if lines[i] == m[1] {
					break
				}
			}
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// shellSession is one interactive-like bash: commands run one after the
// other in the same shell, so `eval` and exports carry over as in a terminal.
type shellSession struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

const statusMark = "__quickstart_status__"

func startShell(t *testing.T, env []string) *shellSession {
	t.Helper()
	// Commands come in on fd 3; stdin is /dev/null, as a terminal's would
	// not be eaten by ssh: ssh forwards its stdin to the remote command.
	pr, stdin, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "/dev/fd/3")
	cmd.Env = env
	cmd.Dir = envValue(env, "HOME")
	cmd.ExtraFiles = []*os.File{pr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	s := &shellSession{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	fmt.Fprintln(stdin, "exec 2>&1")
	return s
}

// run runs one command and returns its output and exit status.
func (s *shellSession) run(command string) (string, int) {
	s.t.Helper()
	fmt.Fprintf(s.stdin, "%s\nprintf '\\n%s %%d\\n' $?\n", command, statusMark)
	var out []string
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("the shell exited during %q:\n%s", command, strings.Join(out, "\n"))
			}
			if rest, found := strings.CutPrefix(l, statusMark+" "); found {
				code, _ := strconv.Atoi(rest)
				return strings.TrimSuffix(strings.Join(out, "\n"), "\n"), code
			}
			out = append(out, l)
		case <-timeout:
			s.t.Fatalf("%q did not finish:\n%s", command, strings.Join(out, "\n"))
		}
	}
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// unitValue reads KEY= from a unit file's text.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("unit has no %s=:\n%s", key, unit)
	return ""
}

// emulateSystemd does what `systemctl --user enable --now safe-agent.socket`
// and the first connection would: create the socket the socket unit
// describes (%t is XDG_RUNTIME_DIR) and start the service's ExecStart with
// it, in the environment a user manager gives services.
func emulateSystemd(t *testing.T, unitDir, runtimeDir string, env []string) *activatedAgent {
	t.Helper()
	sockUnit, err := os.ReadFile(filepath.Join(unitDir, "safe-agent.socket"))
	if err != nil {
		t.Fatalf("service install wrote no socket unit: %v", err)
	}
	svcUnit, err := os.ReadFile(filepath.Join(unitDir, "safe-agent.service"))
	if err != nil {
		t.Fatalf("service install wrote no service unit: %v", err)
	}
	path := strings.ReplaceAll(unitValue(t, string(sockUnit), "ListenStream"), "%t", runtimeDir)
	dirMode, _ := strconv.ParseUint(unitValue(t, string(sockUnit), "DirectoryMode"), 8, 32)
	sockMode, _ := strconv.ParseUint(unitValue(t, string(sockUnit), "SocketMode"), 8, 32)
	if err := os.MkdirAll(filepath.Dir(path), os.FileMode(dirMode)); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(true) // RemoveOnStop=yes
	t.Cleanup(func() { l.Close() })
	os.Chmod(path, os.FileMode(sockMode))
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	argv := strings.Fields(unitValue(t, string(svcUnit), "ExecStart"))
	if argv[0] != agentBin() {
		t.Fatalf("ExecStart runs %s, want the binary that installed it, %s", argv[0], agentBin())
	}
	return startActivatedArgv(t, lf, "", env, argv)
}

// TestReadmeQuickstart runs the README's quick start, the ```sh quickstart
// blocks, command by command in one bash session with a fresh HOME, and
// checks that it ends where the README says: a forwarded login to
// db.internal allowed after a prompt, one to other.internal refused by the
// policy, both in the audit log.
//
// The premise the README states is set up first: ~/.ssh/id_ed25519
// (comment you@laptop) exists and the servers accept it; known_hosts
// lists jump.example.com, db.internal and other.internal, hashed as
// Debian's OpenSSH writes it. The servers are test sshds on 127.0.0.1.
//
// Substitutions, and why:
//   - `go install …@latest` is checked (module path, package directory) but
//     not run: the test uses the binary it built, on PATH.
//   - ssh reads its config from the passwd home, not $HOME, so every `ssh `
//     gets `-F CONFIG` with the test's client config (names → test sshds).
//   - No user systemd here: `service install` writes the units and says it
//     skipped enabling (checked), then the test does what systemd would,
//     from the written units: creates the socket and starts ExecStart with
//     it (socket activation), in the environment a desktop session's user
//     manager has (session bus with an unlocked gnome-keyring, SSH_ASKPASS
//     of a fake prompt that answers yes).
//   - After a command that changes the policy file, the test waits for the
//     agent's reload (it polls every second; a person types slower).
//
// A command whose comment says "refused" must fail; every other must
// succeed.
func TestReadmeQuickstart(t *testing.T) {
	need(t, "bash", "bash")
	need(t, "dbus-send", "dbus")
	n := newSSHNet(t, "jump.example.com", "db.internal", "other.internal")
	bus := startSecretBus(t, unlockedKeyring)
	ask := newFakeAskpass(t)
	ask.answer("yes")

	dir := shortTempDir(t)
	home, run := filepath.Join(dir, "home"), filepath.Join(dir, "run")
	sshDir := filepath.Join(home, ".ssh")
	mkdirs(t, sshDir, run)
	// The premise: your key, which the servers know, and known_hosts.
	key := filepath.Join(sshDir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "you@laptop", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	n.authorize(key + ".pub")
	kh := filepath.Join(sshDir, "known_hosts")
	khText, _ := os.ReadFile(n.KnownHosts)
	os.WriteFile(kh, khText, 0o644)
	if out, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, out)
	}
	os.Remove(kh + ".old")
	cfg := filepath.Join(dir, "ssh_config")
	var c strings.Builder
	for _, name := range []string{"jump.example.com", "db.internal", "other.internal"} {
		fmt.Fprintf(&c, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  HostKeyAlias %s\n\n", name, n.Hosts[name].Port, name)
	}
	// No identity file that a jump host (same file system) could read:
	// every signature goes through the agent.
	fmt.Fprintf(&c, "Host *\n  User %s\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  IdentityFile %s\n  BatchMode yes\n  PreferredAuthentications publickey\n  ConnectTimeout 10\n  LogLevel ERROR\n",
		currentUser(t), kh, filepath.Join(dir, "no-such-key"))
	os.WriteFile(cfg, []byte(c.String()), 0o644)

	base := []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + run, "DBUS_SESSION_BUS_ADDRESS=" + bus.Addr, "LANG=C.UTF-8", "USER=" + currentUser(t)}
	shellEnv := append([]string{"PATH=" + binDir + ":" + os.Getenv("PATH"), "SHELL=/bin/bash", "TERM=dumb"}, base...)
	// A desktop's user manager has the session bus and what prompts need.
	agentEnv := append([]string{"PATH=" + os.Getenv("PATH"), "SSH_ASKPASS=" + ask.Path}, base...)
	sh := startShell(t, shellEnv)

	module := ""
	if gomod, err := os.ReadFile("../go.mod"); err == nil {
		module = strings.TrimPrefix(strings.SplitN(string(gomod), "\n", 2)[0], "module ")
	}
	sshRE := regexp.MustCompile(`(^|[\s;|&('"])ssh `)
	policyFile := filepath.Join(home, ".config", "safe-agent", "policy.toml")
	auditLog := filepath.Join(home, ".local", "state", "safe-agent", "audit.jsonl")
	var agentProc *activatedAgent
	outputs := map[string]string{}
	ran := 0
	for _, b := range readmeBlocks(t) {
		if b.info != "sh quickstart" {
			continue
		}
		for _, cmd := range shellCommands(b.text) {
			first, _, _ := strings.Cut(cmd, "\n")
			comment := ""
			if i := strings.Index(first, " # "); i >= 0 {
				comment = first[i:]
			}
			if strings.Contains(first, "go install ") {
				// As the tests build it (TestMain): with runtime/secret,
				// static (except under -race, which needs cgo).
				want := "CGO_ENABLED=0 GOEXPERIMENT=runtimesecret go install " + module + "/cmd/safe-agent@latest"
				if first != want {
					t.Fatalf("README line %d: %q, want %q", b.line, first, want)
				}
				if _, err := os.Stat("../cmd/safe-agent/main.go"); err != nil {
					t.Fatalf("the package the README installs is not here: %v", err)
				}
				continue
			}
			typed := sshRE.ReplaceAllString(first, "${1}ssh -F "+cfg+" ") + strings.TrimPrefix(cmd, first)
			before := stampOf(policyFile)
			loads := countPolicyLoads(auditLog)
			start := time.Now()
			out, code := sh.run(typed)
			t.Logf("$ %s\n%s\n(exit %d, %v)", cmd, out, code, time.Since(start).Round(time.Millisecond))
			outputs[first] = out
			ran++
			if wantFail := strings.Contains(comment, "refused"); wantFail != (code != 0) {
				t.Fatalf("README line %d: %q exited %d (want %s):\n%s", b.line, cmd, code, map[bool]string{true: "a failure", false: "success"}[wantFail], out)
			}
			if first == "safe-agent service install" {
				if !strings.Contains(out, "Enabling skipped: no user systemd to talk to") {
					t.Fatalf("service install did not say it skipped enabling:\n%s", out)
				}
				agentProc = emulateSystemd(t, filepath.Join(home, ".config", "systemd", "user"), run, agentEnv)
				t.Cleanup(func() {
					if t.Failed() {
						t.Logf("agent log:\n%s", agentProc.stderr.String())
					}
				})
			}
			if agentProc != nil && stampOf(policyFile) != before {
				waitPolicyLoad(t, auditLog, loads)
			}
		}
	}
	if ran < 10 {
		t.Fatalf("ran only %d quick start commands: are the README's ```sh quickstart blocks there?", ran)
	}
	if agentProc == nil {
		t.Fatal("the quick start never ran `safe-agent service install`")
	}

	// Where the README says it ends.
	host, _ := os.Hostname()
	if out := outputs["ssh -A jump.example.com ssh db.internal hostname      # allowed: your desktop asks before each use; say yes"]; !strings.Contains(out, host) {
		t.Errorf("the allowed forwarded login printed %q, want the host name %q", out, host)
	}
	if out := outputs["safe-agent status"]; !strings.Contains(out, "safe-agent is running") {
		t.Errorf("safe-agent status: %q", out)
	}
	if out := outputs["safe-agent list"]; !strings.Contains(out, "you@laptop") || !strings.Contains(out, "confirm every use") {
		t.Errorf("safe-agent list: %q", out)
	}
	// other.internal is not named in the policy, so its hashed known_hosts
	// entry gives it no name: it shows by host key fingerprint.
	otherKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(n.Hosts["other.internal"].HostPub))
	if err != nil {
		t.Fatal(err)
	}
	otherFP := ssh.FingerprintSHA256(otherKey)
	var allowed, hidden bool
	for _, r := range readAudit(t, auditLog) {
		if len(r.Path) != 2 || !r.Path[0].Forwarded || !hasName(r.Path[0], "jump.example.com") {
			continue
		}
		switch {
		case r.Event == audit.EventSign && r.Decision == audit.DecisionAllowed && hasName(r.Path[1], "db.internal"):
			allowed = r.Prompt != nil && r.Prompt.Outcome == audit.PromptYes
		case r.Event == audit.EventSign && r.Path[1].Fingerprint == otherFP:
			t.Errorf("a signature for other.internal was even asked for: %+v", r)
		case r.Event == audit.EventList && r.Path[1].Fingerprint == otherFP:
			hidden = strings.Contains(r.Detail, "0 keys shown, 1 hidden")
		}
	}
	if !allowed || !hidden {
		t.Errorf("audit log: forwarded login to db.internal allowed after a yes: %v; key hidden from the forwarded agent on its way to other.internal: %v", allowed, hidden)
	}
	prompts := strings.Join(ask.prompts(), "\n")
	if !strings.Contains(prompts, "jump.example.com (forwarded) → db.internal") {
		t.Errorf("no prompt named the forwarded path; prompts:\n%s", prompts)
	}
	if strings.Contains(prompts, "other.internal") {
		t.Errorf("a prompt asked about other.internal, which the policy refuses outright:\n%s", prompts)
	}
}

func hasName(h audit.Hop, name string) bool {
	for _, n := range h.Names {
		if n == name {
			return true
		}
	}
	return false
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime(), fi.Size()}
}

func countPolicyLoads(auditLog string) int {
	recs, err := audit.Tail(auditLog, 0, audit.Filter{Events: []string{audit.EventPolicyLoad, audit.EventPolicyReloadFailed}})
	if err != nil {
		return 0
	}
	return len(recs)
}

func waitPolicyLoad(t *testing.T, auditLog string, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for countPolicyLoads(auditLog) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not reload the policy within 10 s (audit log %s)", auditLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadmePolicyExamples checks every policy example in the README's
// policy reference (```toml policy-example=NAME): `policy check` accepts
// it without warnings, and each `policy explain` in the ```console
// policy-example=NAME block after it prints the lines shown.
func TestReadmePolicyExamples(t *testing.T) {
	home := t.TempDir()
	mkdirs(t, filepath.Join(home, ".ssh"))
	var kh strings.Builder
	for _, h := range []string{"bastion.example.com", "db.internal", "db.prod.internal", "github.com", "devbox.example.com"} {
		k := newKey(t, t.TempDir(), "hostkey", "ed25519", 0)
		pub, _ := os.ReadFile(k + ".pub")
		f := strings.Fields(string(pub))
		fmt.Fprintf(&kh, "%s %s %s\n", h, f[0], f[1])
	}
	os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(kh.String()), 0o644)
	env := []string{"PATH=" + binDir + ":" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}

	examples := map[string]string{}
	explained := map[string]int{}
	for _, b := range readmeBlocks(t) {
		fields := strings.Fields(b.info)
		if len(fields) != 2 || !strings.HasPrefix(fields[1], "policy-example=") {
			continue
		}
		name := strings.TrimPrefix(fields[1], "policy-example=")
		switch fields[0] {
		case "toml":
			file := filepath.Join(home, name+".toml")
			os.WriteFile(file, []byte(b.text), 0o600)
			examples[name] = file
			out, code := runEnv(t, env, "", agentBin(), "policy", "check", file)
			if code != 0 || strings.Contains(out, "warning:") {
				t.Errorf("README line %d, example %s: policy check exit %d:\n%s", b.line, name, code, out)
			}
		case "console":
			file, ok := examples[name]
			if !ok {
				t.Errorf("README line %d: console block for example %q comes before its policy", b.line, name)
				continue
			}
			for _, step := range strings.Split(b.text, "$ ")[1:] {
				cmd, want, _ := strings.Cut(step, "\n")
				if !strings.HasPrefix(cmd, "safe-agent policy explain ") {
					t.Errorf("README line %d: %q is not a policy explain", b.line, cmd)
					continue
				}
				out, code := runEnv(t, append(env, "SAFE_AGENT_POLICY="+file), "", "sh", "-c", cmd)
				if code != 0 {
					t.Errorf("%s: exit %d\n%s", cmd, code, out)
				}
				for _, w := range strings.Split(strings.TrimSpace(want), "\n") {
					if !strings.Contains("\n"+out, "\n"+w+"\n") {
						t.Errorf("README line %d, example %s:\n$ %s\nprinted:\n%s\nwithout the README's line %q", b.line, name, cmd, out, w)
					}
				}
				explained[name]++
			}
		}
	}
	for _, name := range []string{"jump", "github", "signing", "never", "gitonly", "assistants"} {
		if examples[name] == "" || explained[name] < 2 {
			t.Errorf("policy example %q: %d explain lines checked, want the example and at least 2", name, explained[name])
		}
	}
}
