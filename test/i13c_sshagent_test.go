package test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestI13cSSHAgentRemovesItsDirectory: like OpenSSH's agent, the drop-in
// removes the /tmp/ssh-XXXXXX directory it made for its socket when it
// stops: after -k, after its COMMAND ends, and in the foreground (-D).
// A directory it did not make (-a) stays.
func TestI13cSSHAgentRemovesItsDirectory(t *testing.T) {
	dir := shortTempDir(t)
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o700)
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	env := append(baseEnv(dir, dir), "TMPDIR="+tmp)
	leftovers := func() []string {
		m, _ := filepath.Glob(filepath.Join(tmp, "ssh-*"))
		return m
	}

	// eval "$(ssh-agent -s)" … ssh-agent -k
	out, code := runEnv(t, env, "", agentBin(), "ssh-agent", "-s")
	m := shVars.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("ssh-agent -s: exit %d %q", code, out)
	}
	sockDir := filepath.Dir(m[1])
	if !strings.HasPrefix(sockDir, filepath.Join(tmp, "ssh-")) {
		t.Fatalf("socket %s is not in a new %s/ssh-* directory", m[1], tmp)
	}
	if out, code := runEnv(t, append(env, "SSH_AGENT_PID="+m[2]), "", agentBin(), "ssh-agent", "-k"); code != 0 {
		t.Fatalf("ssh-agent -k: exit %d\n%s", code, out)
	}
	pid, _ := strconv.Atoi(m[2])
	waitGone(t, pid, 5*time.Second)
	if l := leftovers(); len(l) != 0 {
		t.Errorf("after -k, left behind: %v", l)
	}

	// The COMMAND form: the agent stops after the command, and cleans up.
	out, code = runEnv(t, env, "", agentBin(), "ssh-agent", "sh", "-c", "echo sock=$SSH_AUTH_SOCK pid=$SSH_AGENT_PID")
	cm := regexp.MustCompile(`sock=(\S+) pid=(\d+)`).FindStringSubmatch(out)
	if code != 0 || cm == nil {
		t.Fatalf("command form: exit %d\n%s", code, out)
	}
	cpid, _ := strconv.Atoi(cm[2])
	waitGone(t, cpid, 5*time.Second)
	if l := leftovers(); len(l) != 0 {
		t.Errorf("after the command ended, left behind: %v", l)
	}

	// In the foreground (-D), until SIGTERM.
	fg := exec.Command(agentBin(), "ssh-agent", "-D")
	fg.Env = env
	stdout, _ := fg.StdoutPipe()
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	first, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(first, "SSH_AUTH_SOCK="+filepath.Join(tmp, "ssh-")) || len(leftovers()) != 1 {
		fg.Process.Kill()
		t.Fatalf("ssh-agent -D printed %q; directories: %v", first, leftovers())
	}
	fg.Process.Signal(syscall.SIGTERM)
	fg.Wait()
	if l := leftovers(); len(l) != 0 {
		t.Errorf("after ssh-agent -D stopped, left behind: %v", l)
	}

	// -a: the directory is the user's; only the socket goes.
	own := filepath.Join(dir, "own")
	os.Mkdir(own, 0o700)
	out, code = runEnv(t, env, "", agentBin(), "ssh-agent", "-s", "-a", filepath.Join(own, "s.sock"))
	am := shVars.FindStringSubmatch(out)
	if code != 0 || am == nil {
		t.Fatalf("ssh-agent -s -a: exit %d %q", code, out)
	}
	runEnv(t, append(env, "SSH_AGENT_PID="+am[2]), "", agentBin(), "ssh-agent", "-k")
	apid, _ := strconv.Atoi(am[2])
	waitGone(t, apid, 5*time.Second)
	if _, err := os.Stat(own); err != nil {
		t.Errorf("-a %s/s.sock: the directory went with the agent: %v", own, err)
	}
	if _, err := os.Stat(filepath.Join(own, "s.sock")); !os.IsNotExist(err) {
		t.Errorf("-a: socket left after -k: %v", err)
	}
}
