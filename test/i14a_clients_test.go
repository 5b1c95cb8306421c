package test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// clientSetup is one real sshd host ("gitsrv"), an agent with a policy
// (and a fake askpass as its prompt), and one key "user" in the agent
// whose private file is gone.
type clientSetup struct {
	t   *testing.T
	n   *sshNet
	a   *agentProc
	ask *fakeAskpass
	dir string
	pub string
}

func newClientSetup(t *testing.T, body string) *clientSetup {
	t.Helper()
	n := newSSHNet(t, "gitsrv")
	ask := newFakeAskpass(t)
	pol := n.policy(fmt.Sprintf("prompt = %q\nconfirm_timeout = \"10s\"\nrefusal_memory = \"0s\"\n[defaults]\nconfirm = \"never\"\n%s", ask.Path, body))
	a := startAgent(t, agentOpts{policy: pol})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	key := newKey(t, dir, "user", "ed25519", 0)
	n.authorize(key + ".pub")
	a.mustRun("ssh-add", key)
	os.Remove(key)
	return &clientSetup{t: t, n: n, a: a, ask: ask, dir: dir, pub: key + ".pub"}
}

// shell runs a command line with sh, the agent in the environment.
func (s *clientSetup) shell(cmd string, env ...string) (string, int) {
	s.t.Helper()
	return runEnv(s.t, append(s.a.env(), env...), "", "sh", "-c", cmd)
}

// login is the shell line for a login to gitsrv that prints "reached".
func (s *clientSetup) login() string {
	return fmt.Sprintf("ssh -F %s gitsrv echo reached", s.n.Config)
}

// signs are the audit log's sign records since the first from.
func (s *clientSetup) signs(from int) []audit.Record {
	var out []audit.Record
	for _, r := range readAudit(s.t, s.a.Audit)[from:] {
		if r.Event == "sign" {
			out = append(out, r)
		}
	}
	return out
}

func (s *clientSetup) records() int { return len(readAudit(s.t, s.a.Audit)) }

// lastSign is the newest sign record since from; the test fails without one.
func (s *clientSetup) lastSign(from int) audit.Record {
	s.t.Helper()
	recs := s.signs(from)
	if len(recs) == 0 {
		s.t.Fatalf("no sign record since record %d", from)
	}
	return recs[len(recs)-1]
}

// TestI14aClientsGitOnly: a key with clients = ["git"] pushes to a real
// bare repository over ssh through the agent; the same key in a plain ssh
// login from a shell is refused, and the reason and the audit record name
// the process chain.
func TestI14aClientsGitOnly(t *testing.T) {
	need(t, "git", "git")
	s := newClientSetup(t, "[[key]]\nmatch = \"user\"\nclients = [\"git\"]\n")
	bare := filepath.Join(s.dir, "remote.git")
	work := filepath.Join(s.dir, "work")
	gitEnv := []string{"GIT_SSH_COMMAND=ssh -F " + s.n.Config, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1"}
	setup := fmt.Sprintf("git init -q --bare %s && git init -q %s && cd %s && echo hi > f && git add f && git commit -q -m first",
		bare, work, work)
	if out, code := s.shell(setup, gitEnv...); code != 0 {
		t.Fatalf("set up repositories: exit %d\n%s", code, out)
	}

	from := s.records()
	out, code := s.shell(fmt.Sprintf("cd %s && git push -q gitsrv:%s HEAD:refs/heads/main", work, bare), gitEnv...)
	if code != 0 {
		t.Fatalf("git push through the agent failed (exit %d):\n%s", code, out)
	}
	if got, _ := s.shell("git --git-dir " + bare + " log --format=%s main"); strings.TrimSpace(got) != "first" {
		t.Errorf("the remote has %q, want the pushed commit \"first\"", got)
	}
	ok := s.lastSign(from)
	if ok.Decision != "allowed" || ok.Rule != `key "user"` || !strings.Contains(ok.Reason, `which clients entry "git" in [[key]] match "user" lets use the key`) ||
		!strings.Contains(ok.Client.Chain, "git (") {
		t.Errorf("git push record: %s by %q: %s (chain %s)", ok.Decision, ok.Rule, ok.Reason, ok.Client.Chain)
	}

	from = s.records()
	out, code = s.shell(s.login())
	if code == 0 || strings.Contains(out, "reached") {
		t.Fatalf("a plain ssh login from a shell used the git-only key:\n%s", out)
	}
	r := s.lastSign(from)
	if r.Decision != "denied" || r.Rule != `key "user" clients` {
		t.Fatalf("shell login record: %s by %q, want denied by key \"user\" clients: %s", r.Decision, r.Rule, r.Reason)
	}
	for _, want := range []string{"the request comes from ssh (", " ← sh (", `lets only clients = ["git"] use the key`} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("refusal reason lacks %q: %s", want, r.Reason)
		}
	}
	if !strings.HasPrefix(r.Client.Chain, "ssh (") || !strings.Contains(r.Client.Chain, "← sh (") {
		t.Errorf("audit chain = %q, want ssh ← sh …", r.Client.Chain)
	}
	waitLog(t, s.a, "key \\\"user\\\" clients")
}

// TestI14aClientWrapperScript: a [[client]] section matching a wrapper
// script's name (a real #!/bin/sh script that runs ssh) asks before its
// logins; the same login from a shell is not asked.
func TestI14aClientWrapperScript(t *testing.T) {
	s := newClientSetup(t, "[[client]]\nmatch = \"sa-wrap*\"\nconfirm = \"always\"\n")
	wrapper := filepath.Join(s.dir, "sa-wrap-ssh")
	// Not exec: the script stays the parent of ssh, as wrappers do that
	// do something after it.
	script := fmt.Sprintf("#!/bin/sh\nssh -F %s \"$@\"\nrc=$?\nexit $rc\n", s.n.Config)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	s.ask.answer("yes")
	from := s.records()
	if out, code := s.shell(wrapper + " gitsrv echo reached"); code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("wrapper login refused after a yes (exit %d):\n%s", code, out)
	}
	prompts := s.ask.prompts()
	if len(prompts) != 1 || !strings.Contains(prompts[0], "sa-wrap-ssh (") {
		t.Fatalf("want one prompt naming sa-wrap-ssh, got %d: %q", len(prompts), prompts)
	}
	if r := s.lastSign(from); r.Decision != "allowed" || r.Rule != `client "sa-wrap*" confirm` || r.Prompt == nil {
		t.Errorf("wrapper record: %s by %q (prompt %v): %s", r.Decision, r.Rule, r.Prompt != nil, r.Reason)
	}

	from = s.records()
	if out, code := s.shell(s.login()); code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("shell login refused (exit %d):\n%s", code, out)
	}
	if n := len(s.ask.prompts()); n != 1 {
		t.Errorf("the shell login was asked too: %d prompts", n)
	}
	if r := s.lastSign(from); r.Decision != "allowed" || r.Rule != "defaults" || r.Prompt != nil {
		t.Errorf("shell record: %s by %q: %s", r.Decision, r.Rule, r.Reason)
	}

	s.ask.answer("no")
	if out, code := s.shell(wrapper + " gitsrv echo reached"); code == 0 || strings.Contains(out, "reached") {
		t.Errorf("wrapper login went through after a no:\n%s", out)
	}
	if n := len(s.ask.prompts()); n != 2 {
		t.Errorf("%d prompts after the second wrapper login, want 2", n)
	}
}

// TestI14aArgv0IsNotTheProgram: a process whose argv[0] is "git" (bash's
// exec -a) but whose executable is ssh or ssh-keygen does not match
// clients = ["git"].
func TestI14aArgv0IsNotTheProgram(t *testing.T) {
	need(t, "bash", "bash")
	s := newClientSetup(t, "[[key]]\nmatch = \"user\"\nclients = [\"git\"]\n")
	msg := filepath.Join(s.dir, "msg")
	os.WriteFile(msg, []byte("hello\n"), 0o644)

	for _, tc := range []struct{ name, cmd, first string }{
		{"ssh", "exec -a git ssh -F " + s.n.Config + " gitsrv echo reached", "ssh ("},
		{"ssh-keygen", "exec -a git ssh-keygen -Y sign -f " + s.pub + " -n git " + msg, "ssh-keygen ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := s.records()
			out, code := runEnv(t, s.a.env(), "", "bash", "-c", tc.cmd)
			if code == 0 {
				t.Fatalf("argv[0] git passed for git (exit 0):\n%s", out)
			}
			r := s.lastSign(from)
			if r.Decision != "denied" || r.Rule != `key "user" clients` || !strings.HasPrefix(r.Client.Chain, tc.first) ||
				!strings.Contains(r.Reason, "the request comes from "+tc.first) {
				t.Errorf("record: %s by %q, chain %q: %s", r.Decision, r.Rule, r.Client.Chain, r.Reason)
			}
		})
	}
	if _, err := os.Stat(msg + ".sig"); err == nil {
		t.Errorf("ssh-keygen wrote a signature")
	}
}

// TestI14aProcessGone: a client sends a sign request and exits while the
// prompt is up, a child of it keeping the connection open. The yes comes
// too late: the pid no longer belongs to the process that asked, so the
// request is refused with the reason "process gone".
func TestI14aProcessGone(t *testing.T) {
	s := newClientSetup(t, "[[key]]\nmatch = \"user\"\nclients = [\"sa-gone\"]\nconfirm = \"always\"\n")
	helper := filepath.Join(s.dir, "sa-gone")
	build := exec.Command("go", "build", "-o", helper, "./testdata/sa-gone")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sa-gone: %v\n%s", err, out)
	}
	s.ask.answer("yes")
	s.ask.delay("2")
	from := s.records()
	out, code := runEnv(t, s.a.env(), "", helper, s.a.Socket, s.pub, "8")
	if code != 0 {
		t.Fatalf("sa-gone: exit %d\n%s", code, out)
	}
	var holder int
	fmt.Sscan(out, &holder)
	t.Cleanup(func() {
		if p, err := os.FindProcess(holder); err == nil && holder > 0 {
			_ = p.Kill()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for len(s.signs(from)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no sign record; agent log:\n%s", s.a.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(s.ask.prompts()); n != 1 {
		t.Fatalf("%d prompts, want 1: the request was decided for the live process first", n)
	}
	r := s.lastSign(from)
	if r.Decision != "denied" || r.Rule != `key "user" clients` || !strings.Contains(r.Reason, "cannot be identified (process gone)") {
		t.Errorf("record: %s by %q: %s", r.Decision, r.Rule, r.Reason)
	}
	if !strings.HasPrefix(r.Client.Chain, "sa-gone (") {
		t.Errorf("audit chain = %q, want the process that asked", r.Client.Chain)
	}
}

// TestI14aCgroupMatch: a key limited to clients = ["cgroup:/safe-agent-
// test-*"] logs in from a real process the test moved into a cgroup of
// that name (created as root in the cgroup v2 hierarchy), and is refused
// to the same login from outside it. There is no systemd user manager
// here for a transient unit, so the cgroup is made by hand.
func TestI14aCgroupMatch(t *testing.T) {
	needRoot(t, "create a cgroup")
	mnt := cgroup2Mount(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	name := "safe-agent-test-" + hex.EncodeToString(rnd[:])
	cg := filepath.Join(mnt, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("create cgroup %s: %v", cg, err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	s := newClientSetup(t, "[[key]]\nmatch = \"user\"\nclients = [\"cgroup:/safe-agent-test-*\"]\n")

	from := s.records()
	inside := fmt.Sprintf("echo $$ > %s/cgroup.procs && grep '^0::' /proc/$$/cgroup && %s", cg, s.login())
	out, code := s.shell(inside)
	if code != 0 || !strings.Contains(out, "reached") || !strings.Contains(out, "0::/"+name) {
		t.Fatalf("login from inside the cgroup (exit %d):\n%s", code, out)
	}
	if r := s.lastSign(from); r.Decision != "allowed" || !strings.Contains(r.Reason, "it comes from cgroup /"+name) {
		t.Errorf("inside record: %s by %q: %s", r.Decision, r.Rule, r.Reason)
	}

	from = s.records()
	if out, code := s.shell(s.login()); code == 0 || strings.Contains(out, "reached") {
		t.Fatalf("login from outside the cgroup used the key:\n%s", out)
	}
	if r := s.lastSign(from); r.Decision != "denied" || r.Rule != `key "user" clients` {
		t.Errorf("outside record: %s by %q: %s", r.Decision, r.Rule, r.Reason)
	}
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted: a failure
// under CI=true when there is none, a skip otherwise.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "… MOUNTPOINT … - cgroup2 SOURCE OPTIONS": the root (field 4)
		// must be "/" so that paths in /proc/PID/cgroup start there.
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs := strings.Fields(pre)
		if ok && strings.HasPrefix(post, "cgroup2 ") && len(fs) >= 5 && fs[3] == "/" {
			return fs[4]
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)")
	}
	t.Skip("no cgroup v2 hierarchy is mounted")
	return ""
}
