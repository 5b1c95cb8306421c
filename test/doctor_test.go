package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secretBus is a private D-Bus session bus, optionally with a real
// gnome-keyring Secret Service on it.
type secretBus struct {
	Addr string
	dir  string // HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR of the keyring live here
}

// keyringMode says what runs on a secretBus.
type keyringMode int

const (
	noKeyring       keyringMode = iota // a bus without a Secret Service
	unlockedKeyring                    // gnome-keyring, unlocked with a password
	lockedKeyring                      // gnome-keyring that was never unlocked
)

// startSecretBus starts dbus-daemon with only an empty service directory
// (nothing is activated behind the test's back) and, per mode, a
// gnome-keyring-daemon in the foreground; both are stopped at cleanup.
func startSecretBus(t *testing.T, mode keyringMode) *secretBus {
	t.Helper()
	daemon := need(t, "dbus-daemon", "dbus")
	dir := shortTempDir(t)
	mkdirs(t, filepath.Join(dir, "services"), filepath.Join(dir, "home"), filepath.Join(dir, "data"), filepath.Join(dir, "run"))
	conf := writeBusConfig(t, dir)
	bus := exec.Command(daemon, "--config-file="+conf, "--nofork", "--print-address=1")
	out, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Process.Kill(); _ = bus.Wait() })
	addr := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(l)
	}()
	b := &secretBus{dir: dir}
	select {
	case b.Addr = <-addr:
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon printed no address")
	}
	if mode == noKeyring {
		return b
	}
	gk := need(t, "gnome-keyring-daemon", "gnome-keyring")
	args := []string{"--foreground", "--components=secrets"}
	if mode == unlockedKeyring {
		args = append(args, "--unlock")
	}
	cmd := exec.Command(gk, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DBUS_SESSION_BUS_ADDRESS=" + b.Addr,
		"HOME=" + filepath.Join(dir, "home"), "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_RUNTIME_DIR=" + filepath.Join(dir, "run")}
	if mode == unlockedKeyring {
		cmd.Stdin = strings.NewReader("test-password") // --unlock reads it up to EOF
	}
	logBuf := newSyncBuffer()
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready once it owns org.freedesktop.secrets.
	deadline := time.Now().Add(15 * time.Second)
	for {
		o, _ := runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "DBUS_SESSION_BUS_ADDRESS=" + b.Addr}, "", "dbus-send", "--session", "--print-reply",
			"--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets")
		if strings.Contains(o, "boolean true") {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnome-keyring-daemon did not register on the bus:\n%s\n%s", o, logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// doctorSetup is a healthy set-up for `safe-agent doctor`: an agent on the
// default socket using the keyring, a Secret Service, a prompt program
// named by the policy, a valid policy whose host names are all in
// known_hosts, and the agent's audit log.
type doctorSetup struct {
	a       *agentProc
	run     string // XDG_RUNTIME_DIR
	policy  string // the policy text
	env     []string
	askpass string
}

func newDoctorSetup(t *testing.T, bus *secretBus, policyFor func(knownHosts, askpass string) string) *doctorSetup {
	t.Helper()
	dir := shortTempDir(t)
	kh := filepath.Join(dir, "known_hosts")
	hk := newKey(t, dir, "hostkey", "ed25519", 0)
	pub, _ := os.ReadFile(hk + ".pub")
	f := strings.Fields(string(pub))
	os.WriteFile(kh, []byte(fmt.Sprintf("jump.example %s %s\ndb.internal %s %s\n", f[0], f[1], f[0], f[1])), 0o644)
	ask := newFakeAskpass(t)
	s := &doctorSetup{run: filepath.Join(dir, "run"), askpass: ask.Path}
	s.policy = policyFor(kh, ask.Path)
	mkdirs(t, s.run)
	s.a = startAgent(t, agentOpts{
		policy: s.policy,
		socket: filepath.Join(s.run, "safe-agent", "agent.sock"),
		args:   []string{"--keystore", "keyring"},
		env:    []string{"DBUS_SESSION_BUS_ADDRESS=" + bus.Addr},
	})
	state := filepath.Join(filepath.Dir(s.a.Home), "state")
	s.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + s.a.Home, "LANG=C.UTF-8",
		"XDG_RUNTIME_DIR=" + s.run, "XDG_STATE_HOME=" + state,
		"XDG_CONFIG_HOME=" + filepath.Join(filepath.Dir(s.a.Home), "config"),
		"SSH_AUTH_SOCK=" + s.a.Socket,
		"DBUS_SESSION_BUS_ADDRESS=" + bus.Addr,
	}
	return s
}

// goodPolicy names hosts that known_hosts lists plainly and a prompt
// program that exists.
func goodPolicy(kh, askpass string) string {
	return fmt.Sprintf(`known_hosts = [%q]
prompt = %q

[[key]]
match = "work-*"
allow = ["jump.example", "jump.example>db.internal"]
`, kh, askpass)
}

// runDoctor runs `safe-agent doctor` with env, through the command prefix
// if one is given (a wrapper that changes limits or mounts).
func runDoctor(t *testing.T, env, prefix []string) (string, int) {
	t.Helper()
	argv := append(append([]string{}, prefix...), agentBin(), "doctor")
	return runEnv(t, env, "", argv[0], argv[1:]...)
}

func setEnv(env []string, kv ...string) []string {
	out := append([]string{}, env...)
	for _, e := range kv {
		name, _, _ := strings.Cut(e, "=")
		out = slicesDeleteFunc(out, func(x string) bool { return strings.HasPrefix(x, name+"=") })
		if strings.Contains(e, "=") {
			out = append(out, e)
		}
	}
	return out
}

func slicesDeleteFunc(s []string, del func(string) bool) []string {
	var out []string
	for _, x := range s {
		if !del(x) {
			out = append(out, x)
		}
	}
	return out
}

// checkLines returns the doctor's status column per check name.
func checkLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "ok" || f[0] == "warn" || f[0] == "FAIL" || f[0] == "--") {
			name := f[1]
			if name == "audit" {
				name = "audit log"
			}
			m[name] = f[0]
		}
	}
	return m
}

var doctorChecks = []string{"agent", "OpenSSH", "clients", "known_hosts", "keyring", "prompt", "memory", "audit log", "policy"}

// TestDoctor: on a healthy set-up doctor exits 0 with every check ok; for
// each check, a set-up that breaks exactly that one makes doctor print the
// problem and its fix, mark that check (and only it) FAIL, and exit 1.
func TestDoctor(t *testing.T) {
	need(t, "ssh", "openssh-client")
	need(t, "dbus-send", "dbus")
	good := startSecretBus(t, unlockedKeyring)

	t.Run("healthy", func(t *testing.T) {
		s := newDoctorSetup(t, good, goodPolicy)
		out, code := runDoctor(t, s.env, nil)
		st := checkLines(out)
		for _, c := range doctorChecks {
			if st[c] != "ok" {
				t.Errorf("check %s: %q, want ok", c, st[c])
			}
		}
		if code != 0 || !strings.HasSuffix(out, "All checks passed.\n") {
			t.Errorf("doctor on a healthy set-up: exit %d, want 0:\n%s", code, out)
		}
		for _, want := range []string{
			"safe-agent (pid ", "answers on " + s.a.Socket,
			"sends session-bind",
			"all 2 host names in the policy are known",
			"reachable and unlocked; 0 stored key(s)",
			"confirmations are asked with askpass " + s.askpass,
			"keys can be held in locked memory",
			s.a.Audit + " is writable",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("healthy doctor output lacks %q:\n%s", want, out)
			}
		}
	})

	for _, tc := range []struct {
		name  string
		check string
		// policy, if set, replaces goodPolicy.
		policy func(kh, askpass string) string
		// breakIt changes the set-up and returns the doctor's environment
		// and an optional command prefix to run it through.
		breakIt func(t *testing.T, s *doctorSetup) ([]string, []string)
		want    []string // the problem and its fix
		// others are the statuses of other checks that are not "ok" in
		// this set-up, as a consequence of the broken one.
		others map[string]string
	}{
		{
			name: "SSH_AUTH_SOCK is OpenSSH's agent", check: "agent",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				sshAgent := need(t, "ssh-agent", "openssh-client")
				sock := filepath.Join(shortTempDir(t), "ssh-agent.sock")
				cmd := exec.Command(sshAgent, "-D", "-a", sock)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				for i := 0; i < 100; i++ {
					if _, err := os.Stat(sock); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				return setEnv(s.env, "SSH_AUTH_SOCK="+sock), nil
			},
			want: []string{"is another agent (OpenSSH's ssh-agent, or a desktop keyring's), not safe-agent", "fix: point this shell at safe-agent: eval \"$(safe-agent env)\"", "note: safe-agent (pid "},
		},
		{
			name: "SSH_AUTH_SOCK unset", check: "agent",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				return setEnv(s.env, "SSH_AUTH_SOCK"), nil
			},
			want: []string{"SSH_AUTH_SOCK is not set: ssh, ssh-add and git cannot reach any agent", "fix: point this shell at safe-agent: eval \"$(safe-agent env)\""},
		},
		{
			name: "OpenSSH 8.4", check: "OpenSSH",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				bin := t.TempDir()
				os.WriteFile(filepath.Join(bin, "ssh"), []byte("#!/bin/sh\necho 'OpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w  11 Sep 2023' >&2\n"), 0o755)
				return setEnv(s.env, "PATH="+bin+":"+os.Getenv("PATH")), nil
			},
			want: []string{"(OpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w  11 Sep 2023) is older than OpenSSH 8.9: it does not send session-bind", "fix: install OpenSSH 8.9 or newer"},
		},
		{
			name: "hashed known_hosts and a glob", check: "known_hosts",
			policy: func(kh, askpass string) string {
				if out, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput(); err != nil {
					panic(fmt.Sprintf("ssh-keygen -H: %v %s", err, out))
				}
				os.Remove(kh + ".old")
				return strings.Replace(goodPolicy(kh, askpass), `"jump.example>db.internal"`, `"jump.example>*.internal"`, 1)
			},
			want: []string{"2 known_hosts entries are hashed (HashKnownHosts yes) and globs never match hashed entries; these match no plain entry: *.internal",
				"fix: name those hosts exactly in the policy (exact names are checked against hashed entries)"},
			others: map[string]string{"policy": "warn"}, // the policy itself warns about globs and hashed entries
		},
		{
			name: "a host not in known_hosts", check: "known_hosts",
			policy: func(kh, askpass string) string {
				return strings.Replace(goodPolicy(kh, askpass), `"jump.example>db.internal"`, `"jump.example>db2.internal"`, 1)
			},
			want: []string{"not in known_hosts, so rules naming them never match: db2.internal", "fix: connect to each host once with ssh"},
		},
		{
			name: "no Secret Service", check: "keyring",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				return setEnv(s.env, "DBUS_SESSION_BUS_ADDRESS="+startSecretBus(t, noKeyring).Addr), nil
			},
			want: []string{"no Secret Service on the session bus", "fix: start and unlock a Secret Service in this session"},
		},
		{
			name: "locked keyring", check: "keyring",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				return setEnv(s.env, "DBUS_SESSION_BUS_ADDRESS="+startSecretBus(t, lockedKeyring).Addr), nil
			},
			want: []string{"the login keyring is locked", "fix: start and unlock a Secret Service in this session"},
		},
		{
			name: "no display for the prompt", check: "prompt",
			policy: func(kh, askpass string) string {
				return strings.Replace(goodPolicy(kh, askpass), fmt.Sprintf("prompt = %q\n", askpass), "", 1)
			},
			want: []string{`prompt = "auto": cannot ask: no display: DISPLAY and WAYLAND_DISPLAY are unset`, "every use that needs a confirmation is refused", "fix: run from your desktop session"},
		},
		{
			name: "memory cannot be locked", check: "memory",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				prlimit := need(t, "prlimit", "util-linux")
				wrap := []string{prlimit, "--memlock=0:0", "--"}
				if os.Geteuid() == 0 {
					// root locks memory whatever the limit (CAP_IPC_LOCK): drop it.
					wrap = append([]string{need(t, "setpriv", "util-linux"), "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock"}, wrap...)
				}
				return s.env, wrap
			},
			want: []string{"cannot lock memory for private keys: mlock of 16 KiB failed", "fix: raise the locked-memory limit"},
		},
		{
			name: "audit log not writable", check: "audit log",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				state := filepath.Dir(s.a.Audit)
				if os.Geteuid() != 0 {
					os.Chmod(s.a.Audit, 0o400)
					return s.env, nil
				}
				// root writes whatever the mode says: make the file system
				// read-only for the doctor, in a mount namespace of its own.
				unshare := need(t, "unshare", "util-linux")
				if out, code := runEnv(t, s.env, "", unshare, "-m", "true"); code != 0 {
					t.Skipf("no mount namespaces here (%s); as root the audit log cannot be made unwritable otherwise", strings.TrimSpace(out))
				}
				script := fmt.Sprintf(`mount --bind -o ro %s %s && exec "$@"`, shQuote(state), shQuote(state))
				return s.env, []string{unshare, "-m", "sh", "-c", script, "sh"}
			},
			want: []string{"cannot write ", "read-only file system", "fix: make it writable"},
		},
		{
			name: "invalid policy file", check: "policy",
			breakIt: func(t *testing.T, s *doctorSetup) ([]string, []string) {
				pf := filepath.Join(filepath.Dir(s.a.Home), "config", "policy.toml")
				os.WriteFile(pf, []byte(s.policy+"max_forward_depth = \"two\"\n"), 0o600)
				return s.env, nil
			},
			want:   []string{"policy.toml is not valid:", "policy.toml:7:", "fix: correct those lines (check with `safe-agent policy check "},
			others: map[string]string{"known_hosts": "--", "prompt": "--"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := goodPolicy
			if tc.policy != nil {
				pol = tc.policy
			}
			s := newDoctorSetup(t, good, pol)
			env := s.env
			var wrap []string
			if tc.breakIt != nil {
				env, wrap = tc.breakIt(t, s)
			}
			out, code := runDoctor(t, env, wrap)
			if code != 1 {
				t.Errorf("doctor exit %d, want 1", code)
			}
			st := checkLines(out)
			for _, c := range doctorChecks {
				want := "ok"
				if w, ok := tc.others[c]; ok {
					want = w
				}
				if c == tc.check {
					want = "FAIL"
				}
				if st[c] != want {
					t.Errorf("check %s: %q, want %s", c, st[c], want)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("doctor output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("doctor output:\n%s", out)
			}
		})
	}
}
