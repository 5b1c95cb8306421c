package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

func TestI13cVersion(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	// The test binary: built from this checkout with runtime/secret, and
	// (GOFLAGS may say -buildvcs=false) maybe without VCS stamps.
	out, code := runEnv(t, env, "", agentBin(), "--version")
	if code != 0 || !regexp.MustCompile(`^safe-agent \S+\nrevision .+\nbuilt with go1\.\d+.* for \w+/\w+, GOEXPERIMENT=[^\n]*runtimesecret[^\n]*\n$`).MatchString(out) {
		t.Errorf("--version: exit %d\n%s", code, out)
	}
	if short, _ := runEnv(t, env, "", agentBin(), "-v"); short != out {
		t.Errorf("-v printed %q, --version %q", short, out)
	}

	// Built from the git checkout with VCS stamps, it names the commit and
	// whether the tree had changes.
	need(t, "git", "git")
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	status, err := exec.Command("git", "status", "--porcelain").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "safe-agent")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "../cmd/safe-agent")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, b)
	}
	out, code = runEnv(t, env, "", bin, "--version")
	want := "revision " + strings.TrimSpace(string(head)) + " ("
	if code != 0 || !strings.Contains(out, "\n"+want) {
		t.Errorf("--version of a VCS build: exit %d\n%s\nwant a line starting %q", code, out, want)
	}
	if dirty := len(status) > 0; dirty != strings.Contains(out, ", modified: built with uncommitted changes\n") {
		t.Errorf("--version says modified=%v wrongly (git status: %q):\n%s", !dirty, status, out)
	}
}

// helpFlags are the long flags a command's --help lists under Flags.
func helpFlags(help string) []string {
	_, flags, ok := strings.Cut(help, "\nFlags:\n")
	if !ok {
		return nil
	}
	flags, _, _ = strings.Cut(flags, "\n\n")
	return regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([\w-]+)`).FindAllString(flags, -1)
}

func TestI13cManPages(t *testing.T) {
	need(t, "man", "man-db")
	dir := filepath.Join(t.TempDir(), "man1")
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8", "SOURCE_DATE_EPOCH=1740830400"}
	out, code := runEnv(t, env, "", agentBin(), "man", dir)
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if code != 0 || out != "Wrote "+strconv.Itoa(len(pages))+" man pages to "+dir+".\n" || len(pages) < 25 {
		t.Fatalf("safe-agent man: exit %d, %d pages\n%s", code, len(pages), out)
	}
	// A page per command, each with the flags --help lists.
	for _, cmdPath := range []string{"", "add", "list", "remove", "policy", "policy check", "policy explain", "audit", "audit show", "audit verify", "serve", "ssh-agent", "status", "doctor", "man", "completion bash"} {
		page := filepath.Join(dir, strings.TrimSuffix("safe-agent-"+strings.ReplaceAll(cmdPath, " ", "-"), "-")+".1")
		b, err := os.ReadFile(page)
		if err != nil {
			t.Errorf("%q: no man page: %v", cmdPath, err)
			continue
		}
		help, _ := runEnv(t, env, "", agentBin(), append(strings.Fields(cmdPath), "--help")...)
		flags := helpFlags(help)
		if len(flags) == 0 {
			t.Errorf("%q --help lists no flags:\n%s", cmdPath, help)
		}
		for _, f := range flags {
			name := f[strings.Index(f, "--"):]
			if !strings.Contains(string(b), `\fB`+name+`\fP`) {
				t.Errorf("%s does not mention %s", page, name)
			}
		}
		if !strings.Contains(string(b), `"Mar 2025"`) {
			t.Errorf("%s is not dated by SOURCE_DATE_EPOCH", page)
		}
	}
	// And man renders them.
	rendered, code := runEnv(t, append(env, "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat"), "", "man", "-l", filepath.Join(dir, "safe-agent-audit.1"))
	for _, want := range []string{"SAFE-AGENT-AUDIT(1)", "safe-agent audit [flags]", "--long", "safe-agent-audit-show(1)"} {
		if code != 0 || !strings.Contains(rendered, want) {
			t.Errorf("man -l safe-agent-audit.1: exit %d, lacks %q:\n%s", code, want, rendered)
		}
	}
}

// complete runs cobra's hidden __complete as a shell's completion script
// does, and returns the candidates (value\tdescription) and the directive.
func complete(t *testing.T, env []string, args ...string) ([]string, string) {
	t.Helper()
	cmd := exec.Command(agentBin(), append([]string{"__complete"}, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("__complete %q: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

func TestI13cCompletion(t *testing.T) {
	a := startAgent(t, agentOpts{})
	work := newKey(t, a.Home, "work-laptop", "ed25519", 0)
	home := newKey(t, a.Home, "home-desktop", "ecdsa", 256)
	a.mustRun("ssh-add", work, home)
	workFP, homeFP := fingerprintOf(t, work+".pub"), fingerprintOf(t, home+".pub")
	env := append(a.env(), "XDG_CONFIG_HOME="+filepath.Join(a.Home, "config"))

	got, dir := complete(t, env, "remove", "")
	want := []string{workFP + "\twork-laptop", "work-laptop\t" + workFP, homeFP + "\thome-desktop", "home-desktop\t" + homeFP}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || dir != ":0" {
		t.Errorf("remove <Tab>: %q %s\nwant %q :0 (files too: KEY may be a key file)", got, dir, want)
	}
	if got, _ := complete(t, env, "remove", "wo"); !slices.Equal(got, []string{"work-laptop\t" + workFP}) {
		t.Errorf("remove wo<Tab>: %q", got)
	}
	if got, _ := complete(t, env, "policy", "explain", "--key", "SHA256:"); len(got) != 2 || !slices.Contains(got, workFP+"\twork-laptop") {
		t.Errorf("policy explain --key SHA256:<Tab>: %q", got)
	}
	if got, dir := complete(t, env, "audit", "--key", "h"); !slices.Equal(got, []string{"home-desktop\t" + homeFP}) || dir != ":4" {
		t.Errorf("audit --key h<Tab>: %q %s", got, dir)
	}
	// No agent: nothing to offer, and no error.
	if got, _ := complete(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + a.Home, "SSH_AUTH_SOCK=" + filepath.Join(a.Home, "none.sock")}, "remove", ""); len(got) != 0 {
		t.Errorf("remove <Tab> with no agent: %q", got)
	}

	// Host names from the policy's known_hosts: plain ones only.
	ssh := filepath.Join(a.Home, ".ssh")
	os.MkdirAll(ssh, 0o700)
	hostKey := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	os.WriteFile(filepath.Join(ssh, "known_hosts"), []byte(
		"jump.example.com "+hostKey+"\n"+
			"db.internal,10.0.0.5 "+hostKey+"\n"+
			"[git.internal]:2222 "+hostKey+"\n"+
			"*.corp.example "+hostKey+"\n"+
			"@cert-authority ca.example "+hostKey+"\n"), 0o600)
	kh := filepath.Join(ssh, "known_hosts")
	hashed, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -H: %v\n%s", err, hashed)
	}
	// Hashing replaced the names; add plain ones back, beside a hashed one.
	b, _ := os.ReadFile(kh)
	os.WriteFile(kh, append(b, []byte("jump.example.com "+hostKey+"\ndb.internal "+hostKey+"\n")...), 0o600)
	got, dir = complete(t, env, "policy", "explain", "--key", "work-laptop", "--path", "jump.example.com>d")
	if !slices.Equal(got, []string{"jump.example.com>db.internal"}) || dir != ":4" {
		t.Errorf("--path jump.example.com>d<Tab>: %q %s", got, dir)
	}
	got, _ = complete(t, env, "audit", "--host", "")
	if !slices.Equal(got, []string{"db.internal", "jump.example.com"}) {
		t.Errorf("audit --host <Tab>: %q (hashed names must not appear, nor anything else)", got)
	}
	// --policy names the policy whose known_hosts are read.
	other := filepath.Join(a.Home, "other_known_hosts")
	os.WriteFile(other, []byte("bastion.example "+hostKey+"\n"), 0o600)
	pol := filepath.Join(a.Home, "policy.toml")
	os.WriteFile(pol, []byte("known_hosts = [\""+other+"\"]\n"), 0o600)
	if got, _ := complete(t, env, "policy", "explain", "--policy", pol, "--path", ""); !slices.Equal(got, []string{"bastion.example"}) {
		t.Errorf("--policy %s --path <Tab>: %q", pol, got)
	}
}

func TestI13cAddDefaultKeys(t *testing.T) {
	a := startAgent(t, agentOpts{})
	ssh := filepath.Join(a.Home, ".ssh")
	os.MkdirAll(ssh, 0o700)
	env := a.env()

	out, code := runEnv(t, env, "", agentBin(), "add", "--keystore", "none")
	if code != 1 || !strings.Contains(out, "no KEYFILE given and none of the default keys exists in "+ssh+" (id_rsa, id_ecdsa, id_ecdsa_sk, id_ed25519, id_ed25519_sk, id_dsa)") {
		t.Errorf("add with no keys: exit %d\n%s", code, out)
	}

	newKey(t, ssh, "id_ed25519", "ed25519", 0)
	newKey(t, ssh, "id_ecdsa", "ecdsa", 256)
	newKey(t, a.Home, "not_default", "ed25519", 0)
	out, code = runEnv(t, env, "", agentBin(), "add", "--keystore", "none", "--confirm")
	if code != 0 || !strings.HasPrefix(out, "No KEYFILE given: adding the default keys found in "+ssh+": id_ecdsa, id_ed25519\n") {
		t.Fatalf("add: exit %d\n%s", code, out)
	}
	listed := a.mustRun("ssh-add", "-l")
	if strings.Count(listed, "\n") != 2 || !strings.Contains(listed, "(ED25519)") || !strings.Contains(listed, "(ECDSA)") {
		t.Errorf("ssh-add -l after add:\n%s", listed)
	}
}

func TestI13cListLockedAgent(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.mustRun("ssh-add", newKey(t, a.Home, "k", "ed25519", 0))
	c, err := net.Dial("unix", a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sshagent.NewClient(c).Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	out, _ := a.run(agentBin(), "list", "--keystore", "none")
	if strings.Contains(out, "generic extension failure") ||
		!strings.Contains(out, "note: agent on "+a.Socket+": the agent is locked: unlock it with `safe-agent unlock` or `ssh-add -X`") {
		t.Errorf("list on a locked agent:\n%s", out)
	}
}

func TestI13cAddHelpHasNoSentinel(t *testing.T) {
	out, code := runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, "", agentBin(), "add", "--help")
	if code != 0 || strings.Contains(out, "default -1") || !regexp.MustCompile(`--max-forward-depth int +how many forwarding hops .*default: as the policy says\)\n`).MatchString(out) {
		t.Errorf("add --help:\n%s", out)
	}
	out, code = runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, "", agentBin(), "add", "--max-forward-depth", "-1", "x")
	if code != 1 || !strings.Contains(out, `invalid argument "-1" for "--max-forward-depth" flag: give a number of hops, 0 or more`) {
		t.Errorf("add --max-forward-depth -1: exit %d\n%s", code, out)
	}
}

// TestI13cPolicyHelpNamesFlagsTheCommandsTake: `policy --help` said the
// file is "FILE or --policy", and `policy check --policy` was rejected.
// Each way the help names a file must be one the command takes.
func TestI13cPolicyHelpNamesFlagsTheCommandsTake(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "SSH_AUTH_SOCK=" + filepath.Join(dir, "none.sock")}
	pol := filepath.Join(dir, "policy.toml")
	os.WriteFile(pol, []byte("[defaults]\nconfirm = \"always\"\n"), 0o600)
	help, code := runEnv(t, env, "", agentBin(), "policy", "--help")
	if code != 0 || !strings.Contains(help, "--policy") {
		t.Fatalf("policy --help: exit %d\n%s", code, help)
	}
	_, checkFlag := runEnv(t, env, "", agentBin(), "policy", "check", "--policy", pol)
	_, checkArg := runEnv(t, env, "", agentBin(), "policy", "check", pol)
	_, explainFlag := runEnv(t, env, "", agentBin(), "policy", "explain", "--policy", pol, "--key", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
	if checkArg != 0 || explainFlag != 0 {
		t.Errorf("policy check FILE: exit %d; policy explain --policy FILE: exit %d", checkArg, explainFlag)
	}
	if checkFlag != 0 {
		// check takes no --policy: the help must not offer it for check.
		for _, line := range strings.Split(help, "\n") {
			if strings.Contains(line, "--policy") && !regexp.MustCompile(`explain --policy`).MatchString(line) {
				t.Errorf("policy --help offers --policy, which policy check rejects: %q", line)
			}
		}
	}
}

func TestI13cForwardedListPluralisation(t *testing.T) {
	n := newSSHNet(t, "jump")
	a := startAgent(t, agentOpts{policy: n.policy("")})
	key := newKey(t, a.Home, "mine", "ed25519", 0)
	n.authorize(key + ".pub")
	a.mustRun("ssh-add", key)
	if out, code := n.ssh(a, "-A", "jump", "ssh-add -l"); code != 0 || !strings.Contains(out, "mine") {
		t.Fatalf("ssh -A jump ssh-add -l: exit %d\n%s", code, out)
	}
	var recs []audit.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) == 0 && time.Now().Before(deadline) {
		recs, _ = audit.Tail(a.Audit, 0, audit.Filter{Events: []string{audit.EventList}})
		time.Sleep(100 * time.Millisecond)
	}
	if len(recs) != 1 || recs[0].Detail != "1 key shown, 0 hidden (not usable from this path)" {
		t.Errorf("list records: %+v", recs)
	}
}
