package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestI13bSecondServeSaysAlreadyRunning: a second `serve` on the socket of
// a running agent says so first, with the running agent's pid, before it
// touches the audit log (which the first agent holds); the first agent
// keeps serving and its audit log is untouched.
func TestI13bSecondServeSaysAlreadyRunning(t *testing.T) {
	a := startAgent(t, agentOpts{})
	before, err := os.ReadFile(a.Audit)
	if err != nil {
		t.Fatal(err)
	}
	env := append(a.env(), "XDG_RUNTIME_DIR="+t.TempDir(), "XDG_STATE_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, errOut, code := runSplit(t, env, agentBin(), "serve", "--keystore", "none", "--socket", a.Socket, "--audit-log", a.Audit)
	if code == 0 {
		t.Fatalf("second serve exited 0:\n%s%s", out, errOut)
	}
	want := fmt.Sprintf("an agent is already running on %s (pid %d)", a.Socket, a.cmd.Process.Pid)
	if !strings.Contains(errOut, want) {
		t.Errorf("second serve's error lacks %q:\n%s", want, errOut)
	}
	if strings.Contains(errOut, "audit") {
		t.Errorf("second serve blames the audit log:\n%s", errOut)
	}
	if out != "" {
		t.Errorf("second serve printed %q on stdout (an SSH_AUTH_SOCK line would be eval'ed)", out)
	}
	after, _ := os.ReadFile(a.Audit)
	if string(after) != string(before) {
		t.Errorf("the second serve wrote to the running agent's audit log:\n%s", after[len(before):])
	}
	if l, code := a.run("ssh-add", "-l"); code != 1 || !strings.Contains(l, "no identities") {
		t.Errorf("the first agent no longer answers: exit %d\n%s", code, l)
	}
}
