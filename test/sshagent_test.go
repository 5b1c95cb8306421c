package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("agent pid %d still running after %v", pid, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var shVars = regexp.MustCompile(`^SSH_AUTH_SOCK=(\S+); export SSH_AUTH_SOCK;\nSSH_AGENT_PID=(\d+); export SSH_AGENT_PID;\necho Agent pid (\d+);\n$`)

func TestSSHAgentDropInEval(t *testing.T) {
	need(t, "sh", "dash")
	dir := shortTempDir(t)
	key := newKey(t, dir, "k", "ed25519", 0)
	env := baseEnv(dir, dir)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	// The exact script people have in their profiles.
	script := `eval "$(` + agentBin() + ` ssh-agent -s)" >/dev/null || exit 9
echo "sock=$SSH_AUTH_SOCK pid=$SSH_AGENT_PID"
ssh-add ` + key + ` || exit 10
ssh-add -l || exit 11
` + agentBin() + ` ssh-agent -k || exit 12
ssh-add -l; echo "after-kill=$?"`
	out, code := runEnv(t, env, "", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("script: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "ED25519") {
		t.Errorf("key not listed:\n%s", out)
	}
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no pid:\n%s", out)
	}
	if !strings.Contains(out, "Agent pid "+m[1]+" killed") {
		t.Errorf("-k output:\n%s", out)
	}
	if !strings.Contains(out, "after-kill=2") {
		t.Errorf("agent still reachable after -k:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	waitGone(t, pid, 5*time.Second)

	// The output format, byte for byte as OpenSSH prints it.
	out, code = runEnv(t, env, "", agentBin(), "ssh-agent", "-s")
	mm := shVars.FindStringSubmatch(out)
	if code != 0 || mm == nil || mm[2] != mm[3] {
		t.Fatalf("ssh-agent -s output %q", out)
	}
	apid, _ := strconv.Atoi(mm[2])
	defer syscall.Kill(apid, syscall.SIGTERM)
	out, _ = runEnv(t, append(env, "SSH_AGENT_PID="+mm[2]), "", agentBin(), "ssh-agent", "-c", "-k")
	if out != "unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\necho Agent pid "+mm[2]+" killed;\n" {
		t.Errorf("ssh-agent -c -k printed %q", out)
	}
	waitGone(t, apid, 5*time.Second)
	if _, err := os.Stat(mm[1]); !os.IsNotExist(err) {
		t.Errorf("socket %s left after -k", mm[1])
	}

	out, code = runEnv(t, env, "", agentBin(), "ssh-agent", "-c", "-a", filepath.Join(dir, "c.sock"))
	if code != 0 || !regexp.MustCompile(`^setenv SSH_AUTH_SOCK `+regexp.QuoteMeta(filepath.Join(dir, "c.sock"))+`;\nsetenv SSH_AGENT_PID (\d+);\necho Agent pid \d+;\n$`).MatchString(out) {
		t.Fatalf("ssh-agent -c output %q", out)
	}
	cpid, _ := strconv.Atoi(regexp.MustCompile(`SSH_AGENT_PID (\d+)`).FindStringSubmatch(out)[1])
	syscall.Kill(cpid, syscall.SIGTERM)
	waitGone(t, cpid, 5*time.Second)
}

func TestSSHAgentCommandForm(t *testing.T) {
	dir := shortTempDir(t)
	key := newKey(t, dir, "k", "ed25519", 0)
	env := baseEnv(dir, dir)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	out, code := runEnv(t, env, "", agentBin(), "ssh-agent", "sh", "-c", "ssh-add "+key+" && ssh-add -l && echo pid=$SSH_AGENT_PID && exit 7")
	if code != 7 {
		t.Fatalf("command form exit %d, want the command's 7\n%s", code, out)
	}
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "ED25519") {
		t.Fatalf("command form output:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	waitGone(t, pid, 3*time.Second)
}

func TestSSHAgentSymlink(t *testing.T) {
	dir := shortTempDir(t)
	link := filepath.Join(dir, "ssh-agent")
	if err := os.Symlink(agentBin(), link); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(dir, dir)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	out, code := runEnv(t, env, "", link, "-s", "-a", filepath.Join(dir, "s.sock"))
	m := shVars.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("symlinked ssh-agent -s: exit %d %q", code, out)
	}
	pid, _ := strconv.Atoi(m[2])
	out, code = runEnv(t, append(env, "SSH_AGENT_PID="+m[2]), "", link, "-k")
	if code != 0 || !strings.HasPrefix(out, "unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\n") {
		t.Errorf("symlinked ssh-agent -k: exit %d %q", code, out)
	}
	waitGone(t, pid, 5*time.Second)
	// Bad option: usage and exit 1, as OpenSSH.
	out, code = runEnv(t, env, "", link, "-Z")
	if code != 1 || !strings.Contains(out, "usage:") {
		t.Errorf("ssh-agent -Z: exit %d %q", code, out)
	}
}
