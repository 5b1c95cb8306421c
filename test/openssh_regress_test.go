package test

// OpenSSH's own agent regress test (regress/agent.sh, shipped by Debian's
// openssh-tests package) run against `safe-agent ssh-agent`: the drop-in
// must pass what OpenSSH tests its own agent with, certificate logins
// included.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// regressSrc is where Debian's openssh-tests package installs the suite.
const regressSrc = "/usr/lib/openssh/regress"

// regressPolicy turns safe-agent's restrictions off: the suite tests the
// agent protocol, not safe-agent's policy.
const regressPolicy = `unknown_destination = "allow"

[defaults]
confirm = "never"
max_forward_depth = 16
`

// regressSSH is ssh whose `-Q key-plain` leaves out the key types
// safe-agent refuses, as agent.sh takes its key types from there: DSA
// (off by default since OpenSSH 9.8, gone in 10.0) and FIDO sk- keys (not
// supported, see README). Everything else goes to the real ssh.
const regressSSH = `#!/bin/sh
for a in "$@"; do
	if [ "$a" = key-plain ]; then
		%[1]s "$@" | grep -v -e '^ssh-dss$' -e '^sk-'
		exit
	fi
done
exec %[1]s "$@"
`

func needRegress(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(regressSrc, "agent.sh")); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s/agent.sh not found: install the Debian package openssh-tests", regressSrc)
	}
	t.Skipf("%s/agent.sh not found: apt-get install openssh-tests", regressSrc)
}

func TestOpenSSHRegressAgent(t *testing.T) {
	needRegress(t)
	makeBin := need(t, "make", "make")
	sshd := need(t, "/usr/sbin/sshd", "openssh-server")
	realSSH := need(t, "ssh", "openssh-client")
	if os.Geteuid() == 0 {
		_ = os.MkdirAll("/run/sshd", 0o755)
	}
	dir := shortTempDir(t)
	obj := filepath.Join(dir, "regress")
	// The suite writes keys, configs and logs next to itself.
	if out, err := exec.Command("cp", "-R", "-p", regressSrc, obj).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", regressSrc, err, out)
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, filepath.Join(dir, "home"), filepath.Join(dir, "run"), filepath.Join(dir, "config"), filepath.Join(dir, "state"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeExec(t, filepath.Join(bin, "ssh"), fmt.Sprintf(regressSSH, realSSH))
	writeExec(t, filepath.Join(bin, "ssh-agent"), "#!/bin/sh\nexec "+agentBin()+" ssh-agent \"$@\"\n")
	policy := filepath.Join(dir, "config", "policy.toml")
	if err := os.WriteFile(policy, []byte(regressPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	keyTypes := regressKeyTypes(t, filepath.Join(bin, "ssh"))

	// The drop-in's agents find the policy in SAFE_AGENT_POLICY and write
	// their audit logs under XDG_STATE_HOME; their sockets go to TMPDIR.
	env := append(baseEnv(filepath.Join(dir, "home"), dir),
		"TMPDIR="+filepath.Join(dir, "tmp"),
		"SAFE_AGENT_POLICY="+policy,
		// Only adds StrictModes no: the copy lives under /tmp.
		"TEST_SSH_UNSAFE_PERMISSIONS=1",
	)
	args := []string{"-C", obj, "t-exec", "LTESTS=agent",
		"OBJ=" + obj, ".OBJDIR=" + obj, ".CURDIR=" + obj, "BUILDDIR=" + obj,
		"TEST_SHELL=sh", "TEST_SSH_TRACE=yes",
		"TEST_SSH_SSH=" + filepath.Join(bin, "ssh"),
		"TEST_SSH_SSHD=" + sshd,
		"TEST_SSH_SSHAGENT=" + filepath.Join(bin, "ssh-agent"),
	}
	stateDir := filepath.Join(dir, "state", "safe-agent")
	t.Cleanup(func() { stopLeftAgents(t, stateDir, dir) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, makeBin, args...)
	cmd.Env = env
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("OpenSSH regress agent.sh took %v (key types: %s)", time.Since(start).Round(time.Second), strings.Join(keyTypes, " "))
	if err != nil || !strings.Contains(out, "ok simple agent test") {
		failed, _ := os.ReadFile(filepath.Join(obj, "failed-regress.log"))
		t.Fatalf("OpenSSH regress agent.sh against safe-agent ssh-agent: %v\n%s\nfailed-regress.log:\n%s\nrefused by the agent:\n%s",
			err, tail(out, 4000), tail(string(failed), 4000), tail(regressRefusals(t, stateDir), 4000))
	}
	checkRegressAudit(t, stateDir, keyTypes)
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// regressKeyTypes are the key types agent.sh will test, as it asks for
// them (through the wrapper).
func regressKeyTypes(t *testing.T, ssh string) []string {
	t.Helper()
	out, err := exec.Command(ssh, "-Q", "key-plain").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -Q key-plain: %v\n%s", ssh, err, out)
	}
	types := strings.Fields(string(out))
	joined := " " + strings.Join(types, " ") + " "
	if !strings.Contains(joined, " ssh-ed25519 ") || strings.Contains(joined, " ssh-dss ") || strings.Contains(joined, " sk-") {
		t.Fatalf("key types for agent.sh: %q, want ed25519 and neither DSA nor sk-", types)
	}
	return types
}

// regressRefusals lists the requests the suite's agents refused, with
// the reasons they gave.
func regressRefusals(t *testing.T, stateDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.jsonl"))
	var b strings.Builder
	for _, f := range files {
		for _, r := range readAudit(t, f) {
			if r.Decision == "denied" {
				fmt.Fprintf(&b, "%s: %s\n", describe(r), r.Reason)
			}
		}
	}
	return b.String()
}

// checkRegressAudit checks that the suite really used safe-agent: its
// audit logs (one per agent the suite started) hold the certificate
// logins of every key type, and nothing was refused.
func checkRegressAudit(t *testing.T, stateDir string, keyTypes []string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.jsonl"))
	if len(files) != 2 {
		t.Fatalf("audit logs in %s: %v, want the two agents' logs", stateDir, files)
	}
	var recs []audit.Record
	for _, f := range files {
		recs = append(recs, readAudit(t, f)...)
	}
	signs := 0
	certLogins := map[string]bool{}
	for _, r := range recs {
		if r.Decision == "denied" {
			t.Errorf("refused: %s (%s)", describe(r), r.Reason)
		}
		if r.Event != "sign" || r.Decision != "allowed" {
			continue
		}
		signs++
		b, _ := json.Marshal(r)
		for _, kt := range keyTypes {
			// agent.sh issues each key type's certificate with key id "TYPE cert".
			if strings.Contains(string(b), kt+" cert") {
				certLogins[kt] = true
			}
		}
	}
	for _, kt := range keyTypes {
		if !certLogins[kt] {
			t.Errorf("no allowed sign record names the %s certificate (key id %q)", kt, kt+" cert")
		}
	}
	if signs < 2*len(keyTypes) {
		t.Errorf("%d allowed sign records, want at least %d (a plain and a certificate login per key type)", signs, 2*len(keyTypes))
	}
}

var startPID = regexp.MustCompile(`^pid (\d+), socket (\S+),`)

// stopLeftAgents stops agents the suite started and did not stop (it
// runs `ssh-agent -k` only when it gets that far). Their pids are in the
// start records of their audit logs; a pid is signalled only if it is
// still safe-agent serving a socket under dir.
func stopLeftAgents(t *testing.T, stateDir, dir string) {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.jsonl"))
	for _, f := range files {
		for _, r := range readAudit(t, f) {
			m := startPID.FindStringSubmatch(r.Detail)
			if r.Event != "start" || m == nil || !strings.HasPrefix(m[2], dir+"/") {
				continue
			}
			pid, _ := strconv.Atoi(m[1])
			cmdline, err := os.ReadFile("/proc/" + m[1] + "/cmdline")
			if err != nil || !strings.Contains(string(cmdline), m[2]) {
				continue
			}
			t.Logf("stopping agent pid %d left running by the suite", pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}
