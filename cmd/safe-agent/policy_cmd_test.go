package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// runPolicyCLI runs `safe-agent ARGS` and returns stdout, stderr and the
// exit status main would use.
func runPolicyCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		code = 1
		var ec exitCodeError
		if errors.As(err, &ec) {
			code = ec.code
		}
		if ec.msg != "" || !errors.As(err, &ec) {
			errOut.WriteString("safe-agent: " + err.Error() + "\n")
		}
	}
	return out.String(), errOut.String(), code
}

func hostKeyLine(t *testing.T, seed byte, hosts string) string {
	t.Helper()
	s := bytes.Repeat([]byte{seed}, 32)
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
	if err != nil {
		t.Fatal(err)
	}
	return hosts + " " + string(ssh.MarshalAuthorizedKey(pub))
}

func policyFixture(t *testing.T) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv("SAFE_AGENT_POLICY", "")
	// No agent answers: the policy alone decides.
	t.Setenv("SSH_AUTH_SOCK", filepath.Join(dir, "no-agent.sock"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	kh := hostKeyLine(t, 1, "jump.example") + hostKeyLine(t, 2, "db.internal") + hostKeyLine(t, 3, "other.example")
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "policy.toml")
	src := `known_hosts = ["known_hosts"]
[defaults]
namespaces = ["git"]
confirm = "never"
[[key]]
match = "work-*"
allow = ["jump.example", "jump.example>db.internal"]
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

func TestPolicyCheck(t *testing.T) {
	dir, file := policyFixture(t)
	out, errOut, code := runPolicyCLI(t, "policy", "check", file)
	if code != 0 || errOut != "" {
		t.Fatalf("valid file: code %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"policy: " + file + "\n",
		"[[key]] match \"work-*\", keys whose comment matches it:\n  log in to:   jump.example; db.internal only right after jump.example\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[defaults]\nremember = \"5 min\"\n[[key]]\nmatch = \"x\"\nalow = []\n"), 0o600)
	out, errOut, code = runPolicyCLI(t, "policy", "check", bad)
	want := bad + ":2:12: remember = \"5 min\" is not a duration: write it like \"90s\", \"5m\" or \"1h30m\"\n" +
		bad + ":5:1: unknown field \"alow\" in [[key]]: did you mean \"allow\"?\n"
	if code != 1 || errOut != want || out != "" {
		t.Errorf("invalid file: code %d\nstdout %q\nstderr %q\nwant   %q", code, out, errOut, want)
	}

	// No file at the default path: built-in defaults, exit 0.
	t.Setenv("HOME", dir)
	out, errOut, code = runPolicyCLI(t, "policy", "check")
	if code != 0 || !strings.Contains(errOut, "No policy file at "+filepath.Join(dir, "config", "safe-agent", "policy.toml")+": the built-in defaults apply.") || !strings.Contains(out, "policy: built-in defaults") {
		t.Errorf("default path missing: code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	// A named file that is missing is an error.
	_, errOut, code = runPolicyCLI(t, "policy", "check", filepath.Join(dir, "nope.toml"))
	if code != 1 || !strings.Contains(errOut, "nope.toml: no such file or directory") {
		t.Errorf("missing named file: code %d, stderr %q", code, errOut)
	}
	// SAFE_AGENT_POLICY names the file.
	t.Setenv("SAFE_AGENT_POLICY", file)
	out, _, code = runPolicyCLI(t, "policy", "check")
	if code != 0 || !strings.Contains(out, "policy: "+file) {
		t.Errorf("SAFE_AGENT_POLICY not used: %d %s", code, out)
	}
}

func TestPolicyExplain(t *testing.T) {
	_, file := policyFixture(t)
	tests := []struct {
		name string
		args []string
		want string // the start of stdout
	}{
		{"chain allowed", []string{"--key", "work-laptop", "--path", "jump.example>db.internal", "--user", "deploy"},
			"verdict: allow\nrule:    key \"work-*\" allow[1]\nreason:  Allowed: key \"work-laptop\" may log in as deploy to db.internal (here → jump.example (forwarded) → db.internal): allow entry \"jump.example>db.internal\" in [[key]] match \"work-*\".\n"},
		{"other refused", []string{"--key", "work-laptop", "--path", "jump.example > other.example"},
			"verdict: deny\nrule:    key \"work-*\" allow\n"},
		{"unknown host noted", []string{"--key", "home", "--path", "jump.example>nowhere.example"},
			"verdict: confirm\nrule:    unknown_destination\n"},
		{"SSHSIG local", []string{"--key", "work-laptop", "--namespace", "git"},
			"verdict: allow\nrule:    defaults namespaces[0]\n"},
		{"SSHSIG through jump refused", []string{"--key", "work-laptop", "--namespace", "git", "--path", "jump.example"},
			"verdict: deny\nrule:    local only (built-in)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPolicyCLI(t, append([]string{"policy", "explain", "--policy", file}, tc.args...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("code %d, stderr %q", code, errOut)
			}
			if !strings.HasPrefix(out, tc.want) {
				t.Errorf("stdout:\n%s\nwant it to start with:\n%s", out, tc.want)
			}
		})
	}
	out, _, _ := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", "home", "--path", "jump.example>nowhere.example")
	if !strings.Contains(out, "note: nowhere.example is not in known_hosts (") {
		t.Errorf("no note for an unknown host:\n%s", out)
	}
	if _, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", "k", "--path", "a>>b"); code != 1 || !strings.Contains(errOut, "has an empty host") {
		t.Errorf("bad path: code %d, %q", code, errOut)
	}
	if _, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--path", "a"); code != 1 || !strings.Contains(errOut, `required flag(s) "key" not set`) {
		t.Errorf("missing --key: code %d, %q", code, errOut)
	}
	if _, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", "k", "--user", "u", "--namespace", "git"); code != 1 || !strings.Contains(errOut, "none of the others can be") {
		t.Errorf("--user with --namespace: code %d, %q", code, errOut)
	}
}

// TestPolicyExplainCertificate: --key takes a certificate file, made by
// ssh-keygen -s, matched by its CA and principal.
func TestPolicyExplainCertificate(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ssh-keygen is missing: apt-get install openssh-client")
		}
		t.Skip("ssh-keygen is missing: apt-get install openssh-client")
	}
	dir, file := policyFixture(t)
	keygen := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
	}
	ca, user := filepath.Join(dir, "ca"), filepath.Join(dir, "id_ed25519")
	keygen("-q", "-t", "ed25519", "-N", "", "-f", ca)
	keygen("-q", "-t", "ed25519", "-N", "", "-C", "tsh-login", "-f", user)
	keygen("-q", "-s", ca, "-I", "alice@corp", "-n", "alice,deploy", "-V", "-5m:+1h", user+".pub")
	caFP := strings.Fields(mustOutput(t, "ssh-keygen", "-lf", ca+".pub"))[1]
	src := `known_hosts = ["known_hosts"]
[defaults]
confirm = "never"
allow = ["nowhere.invalid"]
[[key]]
match = "ca:` + caFP + `"
allow = ["db.internal"]
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", user+"-cert.pub", "--path", "db.internal", "--user", "deploy")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	want := "verdict: allow\nrule:    key \"ca:" + caFP + "\" allow[0]\n"
	if !strings.HasPrefix(out, want) || !strings.Contains(out, `with certificate "alice@corp" (principals alice, deploy; CA `+caFP+`)`) {
		t.Errorf("stdout:\n%s\nwant it to start with:\n%s", out, want)
	}
	// The plain key is not matched by the CA.
	out, _, _ = runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", user+".pub", "--path", "db.internal")
	if !strings.HasPrefix(out, "verdict: deny\nrule:    defaults allow\n") {
		t.Errorf("plain key:\n%s", out)
	}
	if _, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", filepath.Join(dir, "policy.toml")); code != 1 || !strings.Contains(errOut, "is not a public key or certificate file") {
		t.Errorf("a file that is no key: code %d, %q", code, errOut)
	}
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

// TestPolicyExplainClient: --client tries clients and [[client]] rules
// with a chain written by hand; --client-pid reads a running process's.
func TestPolicyExplainClient(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.toml")
	src := "known_hosts = []\n[[key]]\nmatch = \"deploy\"\nclients = [\"git\"]\n" +
		"[[client]]\nname = \"assistants\"\nmatch = \"claude\"\nnamespaces = [\"git\"]\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // lines of stdout
	}{
		{"git in the chain", []string{"--key", "deploy", "--user", "git", "--client", "ssh ← git ← zsh"},
			[]string{"verdict: allow", "client:  ssh ← git ← zsh"}},
		{"a shell is refused", []string{"--key", "deploy", "--client", "ssh <- zsh"},
			[]string{"verdict: deny", `rule:    key "deploy" clients`}},
		{"no chain given", []string{"--key", "deploy"},
			[]string{"verdict: deny", `reason:  Refused: key "deploy" may not log in to an unknown host: the requesting program is not known (policy explain: pass --client or --client-pid), and [[key]] match "deploy" lets only clients = ["git"] use the key.`}},
		{"[[client]] namespaces", []string{"--key", "other", "--namespace", "file", "--client", "ssh-keygen ← claude"},
			[]string{"verdict: deny", `rule:    client "assistants" namespaces`}},
		{"this process by pid", []string{"--key", "deploy", "--client-pid", strconv.Itoa(os.Getpid())},
			[]string{"verdict: deny", `rule:    key "deploy" clients`, "client:  " + procComm(t) + " (" + strconv.Itoa(os.Getpid()) + ")"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPolicyCLI(t, append([]string{"policy", "explain", "--policy", file}, tc.args...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("code %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains("\n"+out, "\n"+w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
	if _, errOut, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", "k", "--client", "ssh ← bin/git"); code != 1 || !strings.Contains(errOut, "a path must be absolute") {
		t.Errorf("bad --client: code %d, %q", code, errOut)
	}
}

func procComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no /proc: %v", err)
		}
		t.Skip("no /proc: this test reads /proc/self/comm")
	}
	return strings.TrimSpace(string(b))
}

// policy check lists the upstream agents, expanded, with whether a socket
// is there.
func TestPolicyCheckUpstreams(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "yk.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("UPDIR", dir)
	file := filepath.Join(dir, "policy.toml")
	os.WriteFile(file, []byte("upstream = [\"$UPDIR/yk.sock\", \"$UPDIR/gone.sock\"]\nupstream_timeout = \"20s\"\n"), 0o600)
	out, errOut, code := runPolicyCLI(t, "policy", "check", file)
	want := "\nUpstream agents (their keys get these rules too; a sign request waits at most 20s):\n" +
		"  " + sock + " (socket present)\n" +
		"  " + filepath.Join(dir, "gone.sock") + " (no socket there now: the agent retries it)\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("policy check: code %d\nstdout %s\nstderr %s\nwant it to contain %q", code, out, errOut, want)
	}
}
