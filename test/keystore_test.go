package test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// End-to-end tests of keys at rest (a real gnome-keyring on a private
// session bus) and in use (locked, non-dumpable memory), with the real
// binary.

var keyringArgs = []string{"--keystore", "keyring"}

// secretService is a private D-Bus session bus started for one test, with
// an unlocked gnome-keyring on it, or with no Secret Service at all.
type secretService struct {
	t    *testing.T
	Addr string   // its DBUS_SESSION_BUS_ADDRESS
	env  []string // the session's own environment (for secret-tool, gnome-keyring)
	home string
	pgid int
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startSecretService runs dbus-run-session (and, with keyring, an unlocked
// gnome-keyring-daemon --components=secrets) in a process group of its own;
// cleanup kills the whole group and checks that nothing it started is left.
// The bus may activate nothing (its only service directory is empty), so
// asking for a Secret Service can never start one behind the test's back.
func startSecretService(t *testing.T, keyring bool) *secretService {
	t.Helper()
	need(t, "dbus-run-session", "dbus")
	if keyring {
		need(t, "gnome-keyring-daemon", "gnome-keyring")
	}
	dir := shortTempDir(t)
	ss := &secretService{t: t, home: filepath.Join(dir, "home"), out: newSyncBuffer(), done: make(chan struct{})}
	for _, d := range []string{ss.home, filepath.Join(dir, "data"), filepath.Join(dir, "run"), filepath.Join(dir, "services")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := writeBusConfig(t, dir)
	ss.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + ss.home,
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(ss.home, ".config"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"LANG=C.UTF-8",
	}
	addrFile := filepath.Join(dir, "bus-address")
	script := `echo "$DBUS_SESSION_BUS_ADDRESS" > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 600`
	if keyring {
		script = `echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1; ` + script
	}
	ss.cmd = exec.Command("dbus-run-session", "--config-file="+conf, "--", "sh", "-c", script, addrFile)
	ss.cmd.Env = ss.env
	ss.cmd.Stdout, ss.cmd.Stderr = ss.out, ss.out
	ss.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ss.cmd.Start(); err != nil {
		t.Fatalf("dbus-run-session: %v", err)
	}
	ss.pgid = ss.cmd.Process.Pid
	go func() { _ = ss.cmd.Wait(); close(ss.done) }()
	t.Cleanup(ss.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(addrFile)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			ss.Addr = string(bytes.TrimSpace(b))
			break
		}
		select {
		case <-ss.done:
			t.Fatalf("the session bus ended before it was ready:\n%s", ss.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session bus did not start in 20s:\n%s", ss.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ss.env = append(ss.env, "DBUS_SESSION_BUS_ADDRESS="+ss.Addr)
	if keyring {
		ss.waitSecretService()
	}
	return ss
}

// busEnv points an agent or the CLI at this session bus.
func (ss *secretService) busEnv() []string {
	return []string{"DBUS_SESSION_BUS_ADDRESS=" + ss.Addr}
}

// startKeyring starts an unlocked gnome-keyring-daemon on a bus that had
// none, in the session's process group (so stop kills it too).
func (ss *secretService) startKeyring() {
	t := ss.t
	t.Helper()
	need(t, "gnome-keyring-daemon", "gnome-keyring")
	cmd := exec.Command("gnome-keyring-daemon", "--unlock", "--components=secrets")
	cmd.Env = ss.env
	cmd.Stdin = strings.NewReader("pw")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: ss.pgid}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gnome-keyring-daemon: %v\n%s", err, out)
	}
	ss.waitSecretService()
}

// waitSecretService waits for gnome-keyring to own its bus name: the
// process `gnome-keyring-daemon --unlock` runs exits before the daemon it
// forks does.
func (ss *secretService) waitSecretService() {
	t := ss.t
	t.Helper()
	need(t, "secret-tool", "libsecret-tools")
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, _ := runEnv(t, ss.env, "", "secret-tool", "search", "--all", "service", "safe-agent")
		if !strings.Contains(out, "org.freedesktop.secrets was not provided") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnome-keyring-daemon did not appear on the bus: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills the session's process group and fails the test if any process
// started with the session's environment survives it.
func (ss *secretService) stop() {
	_ = syscall.Kill(-ss.pgid, syscall.SIGKILL)
	select {
	case <-ss.done:
	case <-time.After(10 * time.Second):
		ss.t.Errorf("dbus-run-session did not exit after SIGKILL")
	}
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		left = processesWithEnv("HOME=" + ss.home)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		ss.t.Errorf("processes of the test's session bus outlived it: %s", strings.Join(left, "; "))
		for _, p := range left {
			if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// processesWithEnv lists the processes ("PID command") whose environment
// holds the entry kv.
func processesWithEnv(kv string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(env, []byte{0}) {
			if string(v) == kv {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}

// items lists the accounts (username attributes) of safe-agent's items in
// the keyring, read with secret-tool.
func (ss *secretService) items() []string {
	ss.t.Helper()
	need(ss.t, "secret-tool", "libsecret-tools")
	out, _ := runEnv(ss.t, ss.env, "", "secret-tool", "search", "--all", "service", "safe-agent")
	var accts []string
	for l := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "attribute.username = "); ok {
			accts = append(accts, v)
		}
	}
	return accts
}

// itemsOf are the keyring items that hold fingerprint's key (the main
// item and its chunks).
func itemsOf(items []string, fingerprint string) []string {
	var out []string
	for _, it := range items {
		if it == fingerprint || strings.HasPrefix(it, fingerprint+"#") {
			out = append(out, it)
		}
	}
	return out
}

// runSplit runs a program in a session of its own (no controlling
// terminal, as from a desktop launcher) and returns stdout and stderr
// apart.
func runSplit(t testing.TB, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v timed out; output:\n%s%s", name, args, o.String(), e.String())
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// cli runs `safe-agent ARGS` against agent a with the session bus ss.
func cli(t testing.TB, a *agentProc, ss *secretService, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runSplit(t, append(a.env(), ss.busEnv()...), agentBin(), args...)
}

// listedKey is one entry of `safe-agent list --json`.
type listedKey struct {
	Fingerprint string `json:"fingerprint"`
	Type        string `json:"type"`
	Comment     string `json:"comment"`
	Confirm     bool   `json:"confirm"`
	InKeystore  bool   `json:"in_keystore"`
	Loaded      bool   `json:"loaded"`
}

// listKeys runs `safe-agent list --json` and returns the keys by
// fingerprint, and what it printed on stderr (notes).
func listKeys(t testing.TB, a *agentProc, ss *secretService) (map[string]listedKey, string) {
	t.Helper()
	out, errOut, code := cli(t, a, ss, "list", "--json")
	if code != 0 {
		t.Fatalf("safe-agent list --json: exit %d\n%s%s", code, out, errOut)
	}
	var keys []listedKey
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("safe-agent list --json printed %q: %v", out, err)
	}
	m := map[string]listedKey{}
	for _, k := range keys {
		m[k.Fingerprint] = k
	}
	return m, errOut
}

// keyFile is a key pair made by ssh-keygen for a test.
type keyFile struct {
	Path, Comment, Fingerprint string
}

func makeKey(t testing.TB, dir, name, typ string, bits int) keyFile {
	t.Helper()
	p := newKey(t, dir, name, typ, bits)
	return keyFile{Path: p, Comment: name, Fingerprint: pubFingerprint(t, p+".pub")}
}

// keygenAsync starts ssh-keygen in the background and returns a function
// that waits for the key.
func keygenAsync(t *testing.T, name, typ string, bits int) func(t *testing.T) keyFile {
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-b", strconv.Itoa(bits), "-N", "", "-C", name, "-f", path).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("ssh-keygen -t %s -b %d: %v\n%s", typ, bits, err, out)
		}
		done <- err
	}()
	t.Cleanup(func() { <-done })
	return func(t *testing.T) keyFile {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		done <- nil
		return keyFile{Path: path, Comment: name, Fingerprint: pubFingerprint(t, path+".pub")}
	}
}

func pubFingerprint(t testing.TB, pubFile string) string {
	t.Helper()
	b, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("%s: %v", pubFile, err)
	}
	return ssh.FingerprintSHA256(pk)
}

// waitLogRE waits up to d for the agent's log to match re.
func waitLogRE(t *testing.T, a *agentProc, re string, d time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for !rx.MatchString(a.stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("agent log does not match %q within %s:\n%s", re, d, a.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func loadedLogRE(k keyFile) string {
	return `msg="stored key loaded" fingerprint=` + regexp.QuoteMeta(k.Fingerprint) + ` comment=` + regexp.QuoteMeta(k.Comment) + ` `
}

// TestKeyringRestartLoginConfirmRemove: keys added with `safe-agent add`
// rest in a real gnome-keyring, come back when the agent restarts (ssh-add
// -l and safe-agent list), log in to a real sshd with only the agent able
// to sign, keep their --confirm constraint, and `safe-agent remove` takes a
// key out of the agent and the keyring for good.
func TestKeyringRestartLoginConfirmRemove(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	rsaKey := keygenAsync(t, "rsa-4096", "rsa", 4096) // seconds: overlap it with the setup
	ss := startSecretService(t, true)
	n := newSSHNet(t, "host")
	ask := newFakeAskpass(t)
	// The policy asks for nothing; only the key's own --confirm does.
	pol := n.policy(fmt.Sprintf("prompt = %q\nconfirm_timeout = \"10s\"\n[defaults]\nconfirm = \"never\"\n", ask.Path))
	dir := t.TempDir()
	conf := makeKey(t, dir, "ed-confirm", "ed25519", 0)
	ec := makeKey(t, dir, "ecdsa-p256", "ecdsa", 256)
	rsa := rsaKey(t)
	all := []keyFile{conf, ec, rsa}
	for _, k := range all {
		n.authorize(k.Path + ".pub")
	}

	a := startAgent(t, agentOpts{policy: pol, args: keyringArgs, env: ss.busEnv()})
	waitLogRE(t, a, regexp.QuoteMeta(`msg="keys loaded from the keystore" count=0 keystore=keyring`), 20*time.Second)
	for _, k := range all {
		args := []string{"add", k.Path}
		if k == conf {
			args = []string{"add", "--confirm", k.Path}
		}
		out, errOut, code := cli(t, a, ss, args...)
		want := k.Fingerprint + " " + k.Comment + " ("
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "stored in the keyring, loaded into the agent") {
			t.Fatalf("safe-agent %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		if k == conf && !strings.Contains(out, "\n  confirm every use\n") {
			t.Errorf("safe-agent add --confirm does not say what it set:\n%s", out)
		}
	}
	items := ss.items()
	for _, k := range all {
		if len(itemsOf(items, k.Fingerprint)) == 0 {
			t.Errorf("no keyring item for %s; items: %v", k.Comment, items)
		}
	}
	// RSA-4096 is over the 2 KiB item limit: stored as a manifest and chunks.
	if got := itemsOf(items, rsa.Fingerprint); len(got) < 2 {
		t.Errorf("RSA-4096 key stored in %d item(s) %v, want a manifest and chunks", len(got), got)
	}
	a.stop()

	// Only the agent can sign from here on.
	for _, k := range all {
		if err := os.Remove(k.Path); err != nil {
			t.Fatal(err)
		}
	}
	b := startAgent(t, agentOpts{policy: pol, args: keyringArgs, env: ss.busEnv()})
	waitLogRE(t, b, regexp.QuoteMeta(`msg="keys loaded from the keystore" count=3 keystore=keyring`), 20*time.Second)
	for _, k := range all {
		if !regexp.MustCompile(loadedLogRE(k)).MatchString(b.stderr.String()) {
			t.Errorf("the agent log does not name stored key %s %s:\n%s", k.Fingerprint, k.Comment, b.stderr.String())
		}
	}
	l := b.mustRun("ssh-add", "-l")
	for _, k := range all {
		if !strings.Contains(l, k.Fingerprint+" "+k.Comment) {
			t.Errorf("ssh-add -l after restart lacks %s:\n%s", k.Comment, l)
		}
	}
	table, errOut, code := cli(t, b, ss, "list")
	if code != 0 || errOut != "" {
		t.Errorf("safe-agent list: exit %d, stderr %q", code, errOut)
	}
	for _, k := range all {
		settings := "-"
		if k == conf {
			settings = "confirm every use"
		}
		row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(k.Fingerprint) + `\s+\S+\s+` + regexp.QuoteMeta(k.Comment) + `\s+yes\s+yes\s+` + regexp.QuoteMeta(settings) + `$`)
		if !row.MatchString(table) {
			t.Errorf("safe-agent list has no row %q STORED yes LOADED yes %q:\n%s", k.Comment, settings, table)
		}
	}

	login := func(k keyFile) (string, int) {
		return n.ssh(b, "-o", "IdentitiesOnly=yes", "-i", k.Path+".pub", "host", "echo", "in-as-"+k.Comment)
	}
	for _, k := range []keyFile{ec, rsa} {
		if out, code := login(k); code != 0 || !strings.Contains(out, "in-as-"+k.Comment) {
			t.Errorf("ssh login with stored %s key: exit %d\n%s", k.Comment, code, out)
		}
	}
	if p := ask.prompts(); len(p) != 0 {
		t.Errorf("logins with keys added without --confirm prompted:\n%s", strings.Join(p, "\n---\n"))
	}

	// The --confirm key is still confirm-constrained: a no refuses it...
	ask.answer("no")
	if out, code := login(conf); code == 0 {
		t.Errorf("login with the --confirm key succeeded although the person said no:\n%s", out)
	}
	p := ask.prompts()
	if len(p) != 1 || !strings.Contains(p[0], conf.Comment) || !strings.Contains(p[0], "log in as "+currentUser(t)+" on host") {
		t.Errorf("prompts for the --confirm key:\n%s", strings.Join(p, "\n---\n"))
	}
	refused := `msg="sign refused" .*fingerprint=` + regexp.QuoteMeta(conf.Fingerprint) + `.*added with ssh-add -c or safe-agent add --confirm.*not confirmed \(the person said no\)`
	if !regexp.MustCompile(refused).MatchString(b.stderr.String()) {
		t.Errorf("the agent log does not say the --confirm key was refused for want of confirmation (%s):\n%s", refused, b.stderr.String())
	}
	// ...and a yes lets it log in.
	ask.answer("yes")
	if out, code := login(conf); code != 0 || !strings.Contains(out, "in-as-"+conf.Comment) {
		t.Errorf("login with the --confirm key after a yes: exit %d\n%s", code, out)
	}
	if p := ask.prompts(); len(p) != 2 {
		t.Errorf("%d prompts after the second --confirm login, want 2", len(p))
	}

	// remove by comment: out of the agent and the keyring, chunks too.
	out, errOut, code := cli(t, b, ss, "remove", rsa.Comment)
	if code != 0 || out != rsa.Fingerprint+" "+rsa.Comment+": removed from the agent, deleted from the keyring\n" {
		t.Fatalf("safe-agent remove %s: exit %d\n%s%s", rsa.Comment, code, out, errOut)
	}
	if l := b.mustRun("ssh-add", "-l"); strings.Contains(l, rsa.Fingerprint) {
		t.Errorf("removed key still in the agent:\n%s", l)
	}
	if got := itemsOf(ss.items(), rsa.Fingerprint); len(got) != 0 {
		t.Errorf("removed key still in the keyring: %v", got)
	}
	b.stop()
	c := startAgent(t, agentOpts{policy: pol, args: keyringArgs, env: ss.busEnv()})
	waitLogRE(t, c, regexp.QuoteMeta(`msg="keys loaded from the keystore" count=2 keystore=keyring`), 20*time.Second)
	keys, notes := listKeys(t, c, ss)
	if _, ok := keys[rsa.Fingerprint]; ok || len(keys) != 2 || notes != "" {
		t.Errorf("after remove and restart: list %v, notes %q; want only %s and %s", keys, notes, conf.Comment, ec.Comment)
	}
	for _, k := range []keyFile{conf, ec} {
		if lk := keys[k.Fingerprint]; !lk.InKeystore || !lk.Loaded || lk.Confirm != (k == conf) {
			t.Errorf("after restart %s is %+v", k.Comment, lk)
		}
	}
	if out, code := n.ssh(c, "-o", "IdentitiesOnly=yes", "-i", rsa.Path+".pub", "host", "true"); code == 0 {
		t.Errorf("login with the removed key succeeded:\n%s", out)
	}
}

// ptyRun runs a program with a new pseudo-terminal as its controlling
// terminal. For each step it waits until the program has printed expect,
// then (once the terminal's echo is off, as it is while a password is
// read) types send. It returns everything the terminal showed.
type ptyStep struct{ expect, send string }

func ptyRun(t *testing.T, env []string, steps []ptyStep, name string, args ...string) (string, int) {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	shown := newSyncBuffer()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(shown, master) // ends with EIO once the program has exited
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(format string, args ...any) {
		_ = cmd.Process.Kill()
		t.Fatalf(format+"\nterminal:\n%s", append(args, shown.String())...)
	}
	for _, s := range steps {
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(shown.String(), s.expect) {
			if time.Now().After(deadline) {
				fail("the program did not print %q", s.expect)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for {
			echo, err := ttyEcho(master)
			if err != nil {
				fail("tcgetattr: %v", err)
			}
			if !echo {
				break
			}
			if time.Now().After(deadline) {
				fail("the terminal's echo stayed on after %q", s.expect)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := master.Write([]byte(s.send)); err != nil {
			fail("type into the terminal: %v", err)
		}
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(30 * time.Second):
		fail("the program did not exit")
	}
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	} else if werr != nil {
		t.Fatal(werr)
	}
	return shown.String(), code
}

// TestPassphraseKeyThroughPty: `safe-agent add` of a passphrase-protected
// key asks on the terminal with echo off; a wrong passphrase is a clear
// error and stores nothing; the right one stores and loads the key, which
// then signs through the agent. Without a terminal it says what to do, and
// SSH_ASKPASS answers instead.
func TestPassphraseKeyThroughPty(t *testing.T) {
	need(t, "ssh-keygen", "openssh-client")
	ss := startSecretService(t, true)
	a := startAgent(t, agentOpts{args: keyringArgs, env: ss.busEnv()})
	dir := t.TempDir()
	const pass = "correct horse 42"
	path := filepath.Join(dir, "locked")
	// One bcrypt KDF round (ssh-keygen's default is 16): the race-built CLI
	// derives the key for every try.
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-a", "1", "-N", pass, "-C", "locked-key", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	fp := pubFingerprint(t, path+".pub")
	env := append(a.env(), ss.busEnv()...)
	prompt := "Enter passphrase for " + path + ": "

	shown, code := ptyRun(t, env, []ptyStep{{prompt, "not it\n"}}, agentBin(), "add", path)
	if code != 1 || !strings.Contains(shown, "safe-agent add: wrong passphrase for "+path) {
		t.Errorf("wrong passphrase: exit %d, terminal:\n%s", code, shown)
	}
	if strings.Contains(shown, "not it") {
		t.Errorf("the passphrase was echoed:\n%s", shown)
	}
	if keys, _ := listKeys(t, a, ss); len(keys) != 0 {
		t.Errorf("a wrong passphrase left keys behind: %v", keys)
	}
	if got := itemsOf(ss.items(), fp); len(got) != 0 {
		t.Errorf("a wrong passphrase stored items %v", got)
	}

	shown, code = ptyRun(t, env, []ptyStep{{prompt, pass + "\n"}}, agentBin(), "add", path)
	if code != 0 || !strings.Contains(shown, fp+" locked-key (ssh-ed25519): stored in the keyring, loaded into the agent") {
		t.Fatalf("right passphrase: exit %d, terminal:\n%s", code, shown)
	}
	if strings.Contains(shown, pass) {
		t.Errorf("the passphrase was echoed:\n%s", shown)
	}
	if k := (func() listedKey { m, _ := listKeys(t, a, ss); return m[fp] })(); !k.InKeystore || !k.Loaded || k.Comment != "locked-key" {
		t.Errorf("after adding the passphrase-protected key, list has %+v", k)
	}
	// The agent signs with it; no key file is left to sign with.
	os.Remove(path)
	pubOnly := filepath.Join(t.TempDir(), "locked.pub")
	os.Rename(path+".pub", pubOnly)
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("hello"), 0o644)
	if out, code := a.run("ssh-keygen", "-Y", "sign", "-f", pubOnly, "-n", "file", msg); code != 0 {
		t.Errorf("signing with the added key: exit %d\n%s", code, out)
	}

	// No terminal and no SSH_ASKPASS: a clear error. SSH_ASKPASS answers
	// when there is no terminal, as with ssh-add.
	other := makeKey(t, dir, "other", "ed25519", 0)
	if out, err := exec.Command("ssh-keygen", "-q", "-p", "-a", "1", "-N", pass, "-f", other.Path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -p: %v\n%s", err, out)
	}
	out, errOut, code := runSplit(t, env, agentBin(), "add", other.Path)
	if code != 1 || !strings.Contains(errOut, "is protected by a passphrase and there is no terminal to ask on: run this from a terminal, or set SSH_ASKPASS") {
		t.Errorf("no terminal: exit %d\n%s%s", code, out, errOut)
	}
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\necho '"+pass+"'\n"), 0o755)
	out, errOut, code = runSplit(t, append(env, "SSH_ASKPASS="+askpass), agentBin(), "add", other.Path)
	if code != 0 || !strings.Contains(out, other.Fingerprint+" other (ssh-ed25519): stored in the keyring") {
		t.Errorf("SSH_ASKPASS: exit %d\n%s%s", code, out, errOut)
	}
}

// TestKeyringNoSecretService: on a bus with no Secret Service, `serve
// --keystore keyring` starts, says stored keys were not loaded and what to
// do, serves ssh-add keys; `safe-agent add` fails naming the problem. Once
// a keyring appears on the bus, the agent loads the stored keys by itself.
func TestKeyringNoSecretService(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	ss := startSecretService(t, false)
	a := startAgent(t, agentOpts{args: keyringArgs, env: ss.busEnv()})
	waitLogRE(t, a, regexp.QuoteMeta("stored keys not loaded"), 20*time.Second)
	want := `level=WARN msg="stored keys not loaded: load keys: no Secret Service on the session bus (keyring read index: The name org.freedesktop.secrets was not provided by any .service files); start gnome-keyring-daemon (or KeePassXC with Secret Service enabled); keys added with ssh-add still work, and stored keys load as soon as the keyring is available (or run with --keystore none)" retry="every 10s"`
	if !strings.Contains(a.stderr.String(), want) {
		t.Errorf("agent log lacks\n%s\n:\n%s", want, a.stderr.String())
	}

	dir := t.TempDir()
	session := makeKey(t, dir, "session", "ed25519", 0)
	a.mustRun("ssh-add", session.Path)
	if l := a.mustRun("ssh-add", "-l"); !strings.Contains(l, session.Fingerprint) {
		t.Errorf("ssh-add key not listed:\n%s", l)
	}
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("x"), 0o644)
	os.Remove(session.Path)
	if out, code := a.run("ssh-keygen", "-Y", "sign", "-f", session.Path+".pub", "-n", "file", msg); code != 0 {
		t.Errorf("signing with the ssh-add key: exit %d\n%s", code, out)
	}

	stored := makeKey(t, dir, "to-store", "ed25519", 0)
	out, errOut, code := cli(t, a, ss, "add", stored.Path)
	if code != 1 || out != "" ||
		!strings.HasPrefix(errOut, "safe-agent add: store "+stored.Path+" in the keyring: ") ||
		!strings.Contains(errOut, ": no Secret Service on the session bus (keyring read index: ") ||
		!strings.HasSuffix(errOut, "\nhint: start gnome-keyring-daemon (or KeePassXC with Secret Service enabled)\nhint: use --no-store to load it into the agent for this session only\n") {
		t.Errorf("safe-agent add without a Secret Service: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if l := a.mustRun("ssh-add", "-l"); strings.Contains(l, stored.Fingerprint) {
		t.Errorf("a key that could not be stored was loaded anyway:\n%s", l)
	}
	keys, notes := listKeys(t, a, ss)
	if len(keys) != 1 || !keys[session.Fingerprint].Loaded || keys[session.Fingerprint].InKeystore ||
		!strings.Contains(notes, "note: keyring: load keys: no Secret Service on the session bus") {
		t.Errorf("list without a Secret Service: %v, notes %q", keys, notes)
	}

	// A keyring appears on the bus; a key is stored while the agent does not
	// listen on that socket; the agent's retry loads it.
	ss.startKeyring()
	out, errOut, code = runSplit(t, append(a.env(), ss.busEnv()...), agentBin(), "add", "--socket", filepath.Join(dir, "no-agent.sock"), stored.Path)
	if code != 0 || !strings.Contains(out, stored.Fingerprint+" to-store (ssh-ed25519): stored in the keyring\n") {
		t.Fatalf("safe-agent add once the keyring runs: exit %d\n%s%s", code, out, errOut)
	}
	waitLogRE(t, a, loadedLogRE(stored), 25*time.Second) // the agent retries every 10s
	l := a.mustRun("ssh-add", "-l")
	if !strings.Contains(l, stored.Fingerprint) || !strings.Contains(l, session.Fingerprint) {
		t.Errorf("after the keyring appeared, ssh-add -l:\n%s", l)
	}
}

// agentAs is a safe-agent serve run as another user.
type agentAs struct {
	pid    int
	socket string
	env    []string
	stderr *syncBuffer
}

// startAgentAsUser runs `safe-agent serve --keystore none` as user (with
// setpriv) from a copy of the binary that user can execute.
func startAgentAsUser(t *testing.T, setpriv, user string) *agentAs {
	t.Helper()
	dir := shortTempDir(t)
	os.Chmod(dir, 0o711)
	uid, gid := lookupIDs(t, user)
	home := filepath.Join(dir, "home")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{home, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	src, err := os.ReadFile(agentBin())
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, "safe-agent")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &agentAs{socket: filepath.Join(home, "run", "agent.sock"), stderr: newSyncBuffer()}
	a.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "XDG_STATE_HOME=" + filepath.Join(home, "state"),
		"SSH_AUTH_SOCK=" + a.socket, "LANG=C.UTF-8"}
	cmd := exec.Command(setpriv, "--reuid="+user, "--regid="+user, "--clear-groups", "--",
		exe, "serve", "--keystore", "none", "--socket", a.socket, "--audit-log", filepath.Join(home, "audit.jsonl"))
	cmd.Env = a.env
	cmd.Stderr = a.stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.pid = cmd.Process.Pid // setpriv execs the agent
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 512)
		k, _ := out.Read(b)
		line <- string(b[:k])
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "SSH_AUTH_SOCK="+a.socket) {
			t.Fatalf("agent as %s printed %q; stderr:\n%s", user, l, a.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("agent as %s did not start; stderr:\n%s", user, a.stderr.String())
	}
	return a
}

func lookupIDs(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	for _, f := range []string{"-u", "-g"} {
		out, err := exec.Command("id", f, user).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", f, user, err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		if f == "-u" {
			uid = v
		} else {
			gid = v
		}
	}
	return uid, gid
}

// procStatus returns a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

// TestDumpProtectionAndLockedMemory: the agent, run as an ordinary user,
// holds its keys in locked memory (VmLck > 0), cannot dump core, and
// another process of the same user can neither read its environment or
// memory map, nor open its memory, nor ptrace it — while that same user can
// do all of this to an ordinary process of its own (the control).
func TestDumpProtectionAndLockedMemory(t *testing.T) {
	needRoot(t, "run the agent as an unprivileged user")
	setpriv := need(t, "setpriv", "util-linux")
	need(t, "ssh-add", "openssh-client")
	user := unprivilegedUser(t)
	uid, gid := lookupIDs(t, user)
	a := startAgentAsUser(t, setpriv, user)
	asUser := func(name string, args ...string) (string, int) {
		return runEnv(t, a.env, "", setpriv, append([]string{"--reuid=" + user, "--regid=" + user, "--clear-groups", "--", name}, args...)...)
	}

	keyDir := filepath.Join(filepath.Dir(a.socket), "..", "keys")
	os.MkdirAll(keyDir, 0o700)
	os.Chown(keyDir, uid, gid)
	k := makeKey(t, keyDir, "locked-mem", "ed25519", 0)
	os.Chown(k.Path, uid, gid)
	if out, code := asUser("ssh-add", k.Path); code != 0 {
		t.Fatalf("ssh-add as %s: exit %d\n%s", user, code, out)
	}
	if out, _ := asUser("ssh-add", "-l"); !strings.Contains(out, k.Fingerprint) {
		t.Fatalf("the agent does not hold the key:\n%s", out)
	}
	if got := procStatus(t, a.pid, "Uid"); strings.Fields(got)[0] != strconv.Itoa(uid) {
		t.Fatalf("agent runs as uid %s, want %d", got, uid)
	}
	vmlck := procStatus(t, a.pid, "VmLck")
	if kb, _ := strconv.Atoi(strings.Fields(vmlck)[0]); kb <= 0 {
		t.Errorf("agent VmLck = %q, want > 0", vmlck)
	}
	t.Logf("agent VmLck: %s", vmlck)
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", a.pid))
	if !regexp.MustCompile(`(?m)^Max core file size\s+0\s+0\s`).Match(limits) {
		t.Errorf("core files not disabled:\n%s", limits)
	}
	// A non-dumpable process's /proc files belong to root.
	if fi, err := os.Stat(fmt.Sprintf("/proc/%d/environ", a.pid)); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("/proc/PID/environ of the agent is not root's (not dumpable?): %v", err)
	}

	control := exec.Command(setpriv, "--reuid="+user, "--regid="+user, "--clear-groups", "--", "sleep", "60")
	if err := control.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = control.Process.Kill(); _ = control.Wait() })
	// Until setpriv has exec'd sleep, the control is not dumpable either
	// (changing uid clears the flag; exec as an ordinary user sets it).
	for deadline := time.Now().Add(5 * time.Second); ; {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", control.Process.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control process did not start sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	yama, _ := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	yamaRestricts := len(yama) > 0 && strings.TrimSpace(string(yama)) != "0"
	strace, _ := exec.LookPath("strace")

	type probe struct {
		name string
		args func(pid int) []string
		// attach: a ptrace attach check, which Yama (ptrace_scope >= 1)
		// also refuses between unrelated processes.
		attach bool
	}
	probes := []probe{
		{"read /proc/PID/environ", func(pid int) []string { return []string{"cat", fmt.Sprintf("/proc/%d/environ", pid)} }, false},
		{"read /proc/PID/maps", func(pid int) []string { return []string{"cat", fmt.Sprintf("/proc/%d/maps", pid)} }, false},
		{"open /proc/PID/mem", func(pid int) []string {
			return []string{"dd", fmt.Sprintf("if=/proc/%d/mem", pid), "of=/dev/null", "bs=1", "count=0"}
		}, true},
	}
	if strace != "" {
		probes = append(probes, probe{"ptrace attach (strace -p)", func(pid int) []string {
			return []string{"timeout", "-s", "INT", "1", strace, "-qq", "-e", "trace=none", "-p", strconv.Itoa(pid)}
		}, true})
	} else {
		t.Log("strace not installed (Debian package strace): the ptrace attach itself is checked through /proc/PID/mem only")
	}
	for _, p := range probes {
		if p.attach && yamaRestricts {
			t.Logf("%s: skipped, Yama ptrace_scope=%s refuses it for any process", p.name, strings.TrimSpace(string(yama)))
			continue
		}
		out, code := asUser(p.args(control.Process.Pid)[0], p.args(control.Process.Pid)[1:]...)
		if code != 0 && code != 124 || strings.Contains(out, "ermission denied") || strings.Contains(out, "not permitted") {
			t.Errorf("control: %s of an ordinary process of %s failed: exit %d\n%s", p.name, user, code, out)
		}
		out, code = asUser(p.args(a.pid)[0], p.args(a.pid)[1:]...)
		if code == 0 || !(strings.Contains(out, "Permission denied") || strings.Contains(out, "Operation not permitted")) {
			t.Errorf("%s of the agent by another process of %s: exit %d, want a refusal\n%s", p.name, user, code, out)
		} else {
			t.Logf("%s of the agent as %s: %s", p.name, user, strings.TrimSpace(out))
		}
	}
	// Still serving its owner.
	if out, _ := asUser("ssh-add", "-l"); !strings.Contains(out, k.Fingerprint) {
		t.Errorf("agent stopped serving after the probes:\n%s", out)
	}
}

// mapping is one line of /proc/PID/smaps.
type mapping struct {
	lo, hi uint64
	perms  string
	name   string
	locked bool // VmFlags "lo": mlock'ed (the vault)
}

func readSmaps(t *testing.T, pid int) []mapping {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	head := regexp.MustCompile(`^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$`)
	var ms []mapping
	for l := range strings.Lines(string(b)) {
		l = strings.TrimRight(l, "\n")
		if m := head.FindStringSubmatch(l); m != nil {
			lo, _ := strconv.ParseUint(m[1], 16, 64)
			hi, _ := strconv.ParseUint(m[2], 16, 64)
			ms = append(ms, mapping{lo: lo, hi: hi, perms: m[3], name: m[4]})
			continue
		}
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && len(ms) > 0 {
			for _, f := range strings.Fields(v) {
				if f == "lo" {
					ms[len(ms)-1].locked = true
				}
			}
		}
	}
	return ms
}

// seedScan is where a process holds copies of an ed25519 seed.
type seedScan struct {
	inLocked int
	outside  []string // address, what the copy is, and its mapping
}

// scanSeed reads every readable mapping of pid through /proc/PID/mem and
// finds the seed. A copy outside locked memory is attributed by what
// follows it: the public key then SHA-512(seed)'s second half at +96 is
// crypto/internal/fips140/ed25519.PrivateKey (seed, pub, scalar, prefix),
// the expanded key crypto/ed25519 caches per key slice; the public key
// alone is a 64-byte ed25519.PrivateKey, or, after an SSH length of 64,
// the private section of an openssh-key-v1 blob.
func scanSeed(t *testing.T, pid int, seed, pub []byte) seedScan {
	t.Helper()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	h := sha512.Sum512(seed)
	prefix := h[32:]
	var res seedScan
	const chunk = 4 << 20
	buf := make([]byte, chunk+len(seed))
	for _, m := range readSmaps(t, pid) {
		if m.perms[0] != 'r' || m.name == "[vvar]" || m.name == "[vsyscall]" || m.name == "[vvar_vclock]" {
			continue
		}
		for at := m.lo; at < m.hi; at += chunk {
			end := min(at+chunk+uint64(len(seed)-1), m.hi)
			n, _ := mem.ReadAt(buf[:end-at], int64(at))
			b := buf[:n]
			for off := 0; ; {
				i := bytes.Index(b[off:], seed)
				if i < 0 {
					break
				}
				addr := at + uint64(off+i)
				off += i + 1
				if m.locked {
					res.inLocked++
					continue
				}
				var before [4]byte
				_, _ = mem.ReadAt(before[:], int64(addr)-4)
				after := make([]byte, 128)
				k, _ := mem.ReadAt(after, int64(addr))
				after = after[:k]
				what := "seed alone"
				switch {
				case len(after) >= 128 && bytes.Equal(after[32:64], pub) && bytes.Equal(after[96:128], prefix):
					what = "expanded key (crypto/internal/fips140/ed25519.PrivateKey: seed, pub, scalar, prefix)"
				case len(after) >= 64 && bytes.Equal(after[32:64], pub) && before == [4]byte{0, 0, 0, 64}:
					what = "seed||pub as an SSH string (an openssh-key-v1 private section: x/crypto's PEM decoding)"
				case len(after) >= 64 && bytes.Equal(after[32:64], pub):
					what = "seed||pub (an ed25519.PrivateKey)"
				}
				res.outside = append(res.outside, fmt.Sprintf("%x %s in %x-%x %s %s", addr, what, m.lo, m.hi, m.perms, m.name))
			}
		}
	}
	return res
}

const (
	scanSignatures = 200
	scanGCs        = 3
	scanChurnMax   = 1000
)

// TestMemoryScanStoredKey: an agent loads a stored ed25519 key from the
// keyring, signs with it 200 times, then serves requests until its garbage
// collector has run 3 times. Then its whole memory is read: the
// key's seed is in the locked vault exactly once, and outside it at most
// what the build leaves (0 with GOEXPERIMENT=runtimesecret; see the keystore
// package documentation and scanSeedLimit).
func TestMemoryScanStoredKey(t *testing.T) {
	needRoot(t, "read another process's memory")
	ss := startSecretService(t, true)
	dir := t.TempDir()
	k := makeKey(t, dir, "scanned", "ed25519", 0)
	raw, err := os.ReadFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ssh.ParseRawPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	priv := *parsed.(*ed25519.PrivateKey)
	seed, pubBytes := bytes.Clone(priv.Seed()), bytes.Clone(priv[32:])
	// Stored while no agent listens: the agent gets it only from the keyring.
	out, errOut, code := runSplit(t, append(baseEnv(dir, dir), ss.busEnv()...), agentBin(), "add", "--socket", filepath.Join(dir, "none.sock"), k.Path)
	if code != 0 || !strings.Contains(out, "stored in the keyring") {
		t.Fatalf("safe-agent add: exit %d\n%s%s", code, out, errOut)
	}
	os.Remove(k.Path)

	// gctrace: the agent reports each garbage collection on stderr.
	a := startAgent(t, agentOpts{args: keyringArgs, env: append(ss.busEnv(), "GODEBUG=gctrace=1")})
	waitLogRE(t, a, loadedLogRE(k), 20*time.Second)
	pub, err := ssh.NewPublicKey(ed25519.PublicKey(pubBytes))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ag := sshagent.NewClient(c).(sshagent.ExtendedAgent)
	data := make([]byte, 64)
	for i := range scanSignatures {
		rand.Read(data)
		sig, err := ag.Sign(pub, data)
		if err == nil {
			err = pub.Verify(data, sig)
		}
		if err != nil {
			t.Fatalf("signature %d: %v", i+1, err)
		}
	}
	// Heap churn until the collector has run scanGCs times: the first
	// collection frees the heap copies of the key, whose cleanups drop
	// crypto/ed25519's cached expanded keys, which a later one frees. A
	// few thousand small requests never reach the 4 MB heap goal, so these
	// are large requests for an extension the agent does not know (read,
	// refused, dropped).
	gcRE := regexp.MustCompile(`gc \d+ @\d`)
	gcs := func() int { return len(gcRE.FindAllString(a.stderr.String(), -1)) }
	before, churn := gcs(), make([]byte, 200<<10)
	for i := 0; gcs() < before+scanGCs; i++ {
		if i == scanChurnMax {
			t.Fatalf("%d requests of %d KiB did not make the agent collect garbage %d times:\n%s", i, len(churn)>>10, scanGCs, a.stderr.String())
		}
		if _, err := ag.Extension("churn@safe-agent.test", churn); !errors.Is(err, sshagent.ErrExtensionUnsupported) {
			t.Fatalf("churn request %d: %v, want the extension refused", i+1, err)
		}
	}
	if keys, err := ag.List(); err != nil || len(keys) != 1 {
		t.Fatalf("list after churn: %v %v", keys, err)
	}
	time.Sleep(100 * time.Millisecond) // cleanups queued by the last collection run on their own goroutine

	res := scanSeed(t, a.cmd.Process.Pid, seed, pubBytes)
	erasure := builtWithSecretErasure(t)
	limit := scanSeedLimit(erasure)
	t.Logf("seed copies after %d signatures and %d garbage collections (runtimesecret: %v, race: %v): %d in locked memory, %d outside (limit %d)\n%s",
		scanSignatures, gcs()-before, erasure, raceEnabled, res.inLocked, len(res.outside), limit, strings.Join(res.outside, "\n"))
	if res.inLocked != 1 {
		t.Errorf("%d copies of the seed in locked memory, want exactly 1 (the vault slot)", res.inLocked)
	}
	if len(res.outside) > limit {
		t.Errorf("%d copies of the seed outside locked memory, want at most %d", len(res.outside), limit)
	}
}

// builtWithSecretErasure reports whether the agent under test was built
// with GOEXPERIMENT=runtimesecret for a platform where runtime/secret
// erases (linux/amd64 and linux/arm64; elsewhere secret.Do just calls f).
func builtWithSecretErasure(t *testing.T) bool {
	t.Helper()
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		return false
	}
	bi, err := buildinfo.ReadFile(agentBin())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range bi.Settings {
		if s.Key == "GOEXPERIMENT" && strings.Contains(","+s.Value+",", ",runtimesecret,") {
			return true
		}
	}
	return false
}

// scanSeedLimit is how many copies of the seed may remain outside locked
// memory. With runtime/secret every heap object made while key material is
// handled is erased when freed: none. Without it, each signature leaves the
// expanded key crypto/ed25519 caches for the heap copy of the key (freed,
// not zeroed) until the allocator reuses the memory — up to one per
// signature, plus Seal's self-test and two for the parser's leftovers.
func scanSeedLimit(erasure bool) int {
	if erasure {
		return 0
	}
	return scanSignatures + 1 + 2
}

// TestKeystoreBadInput: bad input is a clear error and loses nothing else.
// A corrupt keyring item is reported when the agent starts (with the
// command that removes it, which works) while the other keys load; a
// truncated key file, a wrong passphrase, DSA and short RSA keys, a public
// key given as the private one, and an empty file each make `safe-agent
// add` exit 1 with a message saying what is wrong, store nothing, and leave
// the keys already there stored and loaded.
func TestKeystoreBadInput(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	ss := startSecretService(t, true)
	dir := t.TempDir()
	keep := makeKey(t, dir, "keep", "ed25519", 0)
	victim := makeKey(t, dir, "victim", "ecdsa", 256)
	a := startAgent(t, agentOpts{args: keyringArgs, env: ss.busEnv()})
	for _, k := range []keyFile{keep, victim} {
		if out, errOut, code := cli(t, a, ss, "add", k.Path); code != 0 {
			t.Fatalf("safe-agent add %s: exit %d\n%s%s", k.Comment, code, out, errOut)
		}
	}
	a.stop()

	// Garbage in the victim's item, as a bad write or another program
	// might leave it.
	need(t, "secret-tool", "libsecret-tools")
	if out, code := runEnv(t, ss.env, "not a safe-agent item\x00\xff", "secret-tool", "store", "--label=garbage", "service", "safe-agent", "username", victim.Fingerprint); code != 0 {
		t.Fatalf("secret-tool store: exit %d\n%s", code, out)
	}
	b := startAgent(t, agentOpts{args: keyringArgs, env: ss.busEnv()})
	waitLogRE(t, b, regexp.QuoteMeta(`msg="keys loaded from the keystore" count=1 keystore=keyring`), 20*time.Second)
	skipped := `level=WARN msg="stored key skipped" problem="stored key ` + victim.Fingerprint + `: corrupt keyring item: not a safe-agent item (no \"safe-agent:1:\" prefix): remove it with ` + "`safe-agent remove " + victim.Fingerprint + "`" + ` and add the key again"`
	if !strings.Contains(b.stderr.String(), skipped) {
		t.Errorf("agent log lacks\n%s\n:\n%s", skipped, b.stderr.String())
	}
	if !regexp.MustCompile(loadedLogRE(keep)).MatchString(b.stderr.String()) {
		t.Errorf("the good key did not load next to the corrupt one:\n%s", b.stderr.String())
	}
	keys, notes := listKeys(t, b, ss)
	if len(keys) != 1 || !keys[keep.Fingerprint].InKeystore || !keys[keep.Fingerprint].Loaded {
		t.Errorf("list with a corrupt item: %v", keys)
	}
	if !strings.Contains(notes, "note: stored key "+victim.Fingerprint+": corrupt keyring item") {
		t.Errorf("list does not report the corrupt item: %q", notes)
	}
	// The command the message gives works, and then the key can be added
	// again.
	out, errOut, code := cli(t, b, ss, "remove", victim.Fingerprint)
	if code != 0 || out != victim.Fingerprint+": deleted from the keyring (it could not be loaded)\n" {
		t.Errorf("safe-agent remove of the corrupt item: exit %d\n%s%s", code, out, errOut)
	}
	if got := itemsOf(ss.items(), victim.Fingerprint); len(got) != 0 {
		t.Errorf("corrupt item still in the keyring: %v", got)
	}
	if out, errOut, code := cli(t, b, ss, "add", victim.Path); code != 0 {
		t.Errorf("adding the key again: exit %d\n%s%s", code, out, errOut)
	}
	want := map[string]bool{keep.Fingerprint: true, victim.Fingerprint: true}
	checkKept := func(when string) {
		t.Helper()
		keys, notes := listKeys(t, b, ss)
		if notes != "" {
			t.Errorf("%s: list notes %q", when, notes)
		}
		if len(keys) != len(want) {
			t.Errorf("%s: list has %d keys, want %d: %v", when, len(keys), len(want), keys)
		}
		for fp := range want {
			if k := keys[fp]; !k.InKeystore || !k.Loaded {
				t.Errorf("%s: key %s is %+v, want stored and loaded", when, fp, k)
			}
		}
		items := ss.items()
		if len(items) != len(want)+1 { // + the index
			t.Errorf("%s: keyring items %v", when, items)
		}
	}
	checkKept("after re-adding the repaired key")

	whole, err := os.ReadFile(keep.Path)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	os.WriteFile(truncated, whole[:len(whole)/2], 0o600)
	cutBody := filepath.Join(dir, "cut-body")
	lines := strings.Split(string(whole), "\n")
	os.WriteFile(cutBody, []byte(strings.Join(append(lines[:2:2], lines[len(lines)-2:]...), "\n")), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	dsa := filepath.Join(dir, "dsa")
	dsaMsg := "DSA keys are not supported (OpenSSH dropped them): create an ed25519 key with `ssh-keygen -t ed25519`"
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", dsa).CombinedOutput(); err != nil {
		t.Logf("this ssh-keygen cannot make DSA keys (%v: %s): checking RSA-1024 only", err, out)
		dsa = ""
	}
	rsa1024 := makeKey(t, dir, "rsa1024", "rsa", 1024)
	locked := filepath.Join(dir, "locked")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-a", "1", "-N", "right", "-f", locked).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\necho wrong\n"), 0o755)

	cases := []struct {
		name, file, want string
	}{
		{"truncated file", truncated, truncated + " is truncated or damaged: its PEM block has no END line or broken base64"},
		{"lines cut out", cutBody, cutBody + " is truncated or damaged"},
		{"empty file", empty, empty + " is empty"},
		{"public key", keep.Path + ".pub", keep.Path + ".pub is a public key: give the private key file (usually the same name without .pub)"},
		{"wrong passphrase", locked, "wrong passphrase for " + locked},
		{"RSA-1024", rsa1024.Path, rsa1024.Path + ": RSA keys shorter than 2048 bits are refused (this one has 1024): create an ed25519 key with `ssh-keygen -t ed25519`"},
		{"missing file", filepath.Join(dir, "no-such-key"), "read " + filepath.Join(dir, "no-such-key") + ": open " + filepath.Join(dir, "no-such-key") + ": no such file or directory"},
	}
	if dsa != "" {
		cases = append(cases, struct{ name, file, want string }{"DSA", dsa, dsa + ": " + dsaMsg})
	}
	env := append(append(b.env(), ss.busEnv()...), "SSH_ASKPASS="+askpass)
	for _, c := range cases {
		out, errOut, code := runSplit(t, env, agentBin(), "add", c.file)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "safe-agent add: "+c.want) {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q\nwant exit 1 and %q", c.name, code, out, errOut, "safe-agent add: "+c.want)
		}
	}
	checkKept("after the bad files")

	// One bad file among good ones: the good one is added, the exit status
	// says something failed.
	extra := makeKey(t, dir, "extra", "ed25519", 0)
	out, errOut, code = cli(t, b, ss, "add", truncated, extra.Path)
	if code != 1 || !strings.Contains(out, extra.Fingerprint+" extra (ssh-ed25519): stored in the keyring, loaded into the agent") ||
		!strings.Contains(errOut, "safe-agent add: "+truncated+" is truncated or damaged") {
		t.Errorf("bad and good file together: exit %d\n%s%s", code, out, errOut)
	}
	want[extra.Fingerprint] = true
	checkKept("after a mixed add")
	if l := b.mustRun("ssh-add", "-l"); strings.Count(l, "SHA256:") != 3 {
		t.Errorf("ssh-add -l:\n%s", l)
	}
}

// writeBusConfig writes a private session bus configuration in dir whose
// only service directory is dir/services (empty unless a test fills it),
// so nothing is D-Bus-activated behind a test's back.
func writeBusConfig(t testing.TB, dir string) string {
	t.Helper()
	conf := filepath.Join(dir, "bus.conf")
	err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=`+dir+`</listen>
  <auth>EXTERNAL</auth>
  <servicedir>`+filepath.Join(dir, "services")+`</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}
