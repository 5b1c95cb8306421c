package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// A prompt without a desktop: an agent with no display, a person working
// in tmux over SSH. The client (ssh-keygen -Y sign) runs in a tmux pane;
// the question pops up in that tmux, and the person answers with keys.
//
// The person's terminal is played by a second tmux server whose pane runs
// `tmux attach`: its capture-pane is what the person sees, popups
// included. (capture-pane of the inner pane never shows a popup: tmux
// 3.3a draws popups over the client, not into the pane.)

type tmuxDesk struct {
	t            *testing.T
	dir          string
	inner, outer string // sockets
	env          []string
}

func newTmuxDesk(t *testing.T) *tmuxDesk {
	t.Helper()
	need(t, "tmux", "tmux")
	dir := shortTempDir(t)
	d := &tmuxDesk{t: t, dir: dir, inner: filepath.Join(dir, "in"), outer: filepath.Join(dir, "out"),
		// No DISPLAY anywhere: a server console or an SSH login.
		env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TERM=xterm-256color", "LANG=C.UTF-8"}}
	d.tmux(d.inner, "new-session", "-d", "-s", "work", "-x", "110", "-y", "32", "sh")
	t.Cleanup(func() { d.kill(d.inner) })
	d.tmux(d.outer, "new-session", "-d", "-x", "110", "-y", "32", "tmux -S "+d.inner+" attach -t work")
	t.Cleanup(func() { d.kill(d.outer) })
	d.waitFor("the terminal to attach", func() bool {
		return strings.TrimSpace(d.tmux(d.inner, "list-clients", "-F", "#{client_name}")) != ""
	})
	return d
}

func (d *tmuxDesk) tmux(sock string, args ...string) string {
	d.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", sock}, args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (d *tmuxDesk) kill(sock string) {
	cmd := exec.Command("tmux", "-S", sock, "kill-server")
	cmd.Env = d.env
	_ = cmd.Run()
}

// screen is what the person sees in their terminal.
func (d *tmuxDesk) screen() string {
	cmd := exec.Command("tmux", "-S", d.outer, "capture-pane", "-p", "-t", "%0")
	cmd.Env = d.env
	out, _ := cmd.Output()
	return string(out)
}

// typeInPane types a command line into the shell in the work pane.
func (d *tmuxDesk) typeInPane(line string) {
	d.tmux(d.inner, "send-keys", "-t", "work", "-l", line)
	d.tmux(d.inner, "send-keys", "-t", "work", "Enter")
}

// press sends keys from the person's terminal (to whatever has the
// focus there: the popup when one shows).
func (d *tmuxDesk) press(keys ...string) {
	d.tmux(d.outer, append([]string{"send-keys", "-t", "%0"}, keys...)...)
}

func (d *tmuxDesk) waitFor(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s; the screen:\n%s", what, d.screen())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitFile waits for a file the pane's command writes when it is done.
func (d *tmuxDesk) waitFile(path string) string {
	d.t.Helper()
	var b []byte
	d.waitFor(filepath.Base(path), func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	return strings.TrimSpace(string(b))
}

func lastSign(t *testing.T, path string) audit.Record {
	t.Helper()
	var last audit.Record
	for _, r := range readAudit(t, path) {
		if r.Event == audit.EventSign {
			last = r
		}
	}
	if last.Event == "" {
		t.Fatal("no sign record in the audit log")
	}
	return last
}

func TestTmuxPopupPromptWithoutDisplay(t *testing.T) {
	desk := newTmuxDesk(t)
	a := startAgent(t, agentOpts{policy: "confirm_timeout = \"6s\"\n"})
	keys := t.TempDir()
	k := newKey(t, keys, "tmuxkey", "ed25519", 0)
	a.mustRun("ssh-add", "-c", k) // every use needs a yes
	pubDir := t.TempDir()         // the public key alone: signing must go through the agent
	pub := filepath.Join(pubDir, "tmuxkey.pub")
	if b, err := os.ReadFile(k + ".pub"); err != nil || os.WriteFile(pub, b, 0o600) != nil {
		t.Fatal("copy the public key")
	}
	msg := filepath.Join(desk.dir, "msg")
	os.WriteFile(msg, []byte("hello"), 0o600)
	sign := func(tag string) string {
		res := filepath.Join(desk.dir, "rc-"+tag)
		os.Remove(msg + ".sig")
		desk.typeInPane("SSH_AUTH_SOCK=" + a.Socket + " ssh-keygen -Y sign -f " + pub + " -n file " + msg + " >/dev/null 2>&1; echo $? > " + res)
		return res
	}

	// Yes.
	res := sign("yes")
	desk.waitFor("the popup", func() bool { return strings.Contains(desk.screen(), "[y/N]") })
	scr := desk.screen()
	for _, want := range []string{"safe-agent: allow key use?", `Allow use of key "tmuxkey" (SHA256:`, "To: sign a file", "By: ssh-keygen ("} {
		if !strings.Contains(scr, want) {
			t.Errorf("the popup does not show %q:\n%s", want, scr)
		}
	}
	desk.press("y", "Enter")
	if rc := desk.waitFile(res); rc != "0" {
		t.Fatalf("ssh-keygen exit %s after yes; agent log:\n%s", rc, a.stderr.String())
	}
	if _, err := os.Stat(msg + ".sig"); err != nil {
		t.Errorf("no signature after yes: %v", err)
	}
	if r := lastSign(t, a.Audit); r.Decision != audit.DecisionAllowed || r.Prompt == nil || r.Prompt.Outcome != audit.PromptYes {
		t.Errorf("audit after yes: %s prompt=%+v", describe(r), r.Prompt)
	}

	// No.
	res = sign("no")
	desk.waitFor("the popup", func() bool { return strings.Contains(desk.screen(), "[y/N]") })
	desk.press("n", "Enter")
	if rc := desk.waitFile(res); rc == "0" {
		t.Fatal("ssh-keygen signed after no")
	}
	if r := lastSign(t, a.Audit); r.Decision != audit.DecisionDenied || r.Prompt == nil || r.Prompt.Outcome != audit.PromptNo ||
		!strings.Contains(r.Reason, "the person said no") {
		t.Errorf("audit after no: %s reason=%q prompt=%+v", describe(r), r.Reason, r.Prompt)
	}

	// Nobody answers: the popup goes away at confirm_timeout.
	res = sign("timeout")
	desk.waitFor("the popup", func() bool { return strings.Contains(desk.screen(), "[y/N]") })
	if rc := desk.waitFile(res); rc == "0" {
		t.Fatal("ssh-keygen signed without an answer")
	}
	desk.waitFor("the popup to close", func() bool { return !strings.Contains(desk.screen(), "safe-agent") })
	if r := lastSign(t, a.Audit); r.Prompt == nil || r.Prompt.Outcome != audit.PromptTimeout {
		t.Errorf("audit after no answer: %s prompt=%+v", describe(r), r.Prompt)
	}

	// In tmux but without a controlling terminal (setsid): no popup,
	// refused with the reason, as without tmux.
	res = filepath.Join(desk.dir, "rc-notty")
	desk.typeInPane("setsid -w env SSH_AUTH_SOCK=" + a.Socket + " ssh-keygen -Y sign -f " + pub + " -n file " + msg + " </dev/null >/dev/null 2>&1; echo $? > " + res)
	if rc := desk.waitFile(res); rc == "0" {
		t.Fatal("signed without a terminal")
	}
	if r := lastSign(t, a.Audit); r.Decision != audit.DecisionDenied || !strings.Contains(r.Reason, "no display") {
		t.Errorf("no tty: %s reason=%q", describe(r), r.Reason)
	}
	if strings.Contains(desk.screen(), "safe-agent: allow") {
		t.Errorf("a popup showed for a client without a terminal:\n%s", desk.screen())
	}

	// Outside tmux (ssh-keygen run by the test, no TMUX): refused with the
	// reason, as today.
	if _, code := a.run("ssh-keygen", "-Y", "sign", "-f", pub, "-n", "file", msg); code == 0 {
		t.Fatal("signed outside tmux without a display")
	}
	if r := lastSign(t, a.Audit); !strings.Contains(r.Reason, "cannot ask: no display") {
		t.Errorf("outside tmux: reason %q, want the no-display reason", r.Reason)
	}
}
