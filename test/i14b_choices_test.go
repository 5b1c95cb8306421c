package test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// fakeZenity is a stand-in zenity on the agent's PATH: it records its
// arguments and answers from a file: "once" exits 0 (OK: "Allow once",
// or "Allow" in a yes/no question); "program" prints the --extra-button
// label and exits 1, as zenity does for that button (in a yes/no
// question, which has none, it is a plain exit 1); "deny" exits 1.
type fakeZenity struct {
	t   *testing.T
	dir string
}

func newFakeZenity(t *testing.T) *fakeZenity {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	script := fmt.Sprintf(`#!/bin/sh
d=%s
{ for a in "$@"; do printf '%%s' "$a" | base64 -w0; echo; done; echo ====; } >> $d/calls
case "$(cat $d/answer)" in
once) exit 0 ;;
program)
	while [ $# -gt 0 ]; do
		if [ "$1" = --extra-button ]; then echo "$2"; exit 1; fi
		shift
	done
	exit 1 ;;
esac
exit 1
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "zenity"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fakeZenity{t: t, dir: dir}
	f.answer("deny")
	return f
}

func (f *fakeZenity) answer(a string) {
	if err := os.WriteFile(filepath.Join(f.dir, "answer"), []byte(a), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// env makes the agent find this zenity and believe it has a display.
func (f *fakeZenity) env() []string {
	return []string{"DISPLAY=:199", "PATH=" + f.dir + ":" + os.Getenv("PATH")}
}

// calls are the argument lists of every run so far.
func (f *fakeZenity) calls() [][]string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "calls"))
	var out [][]string
	var cur []string
	for _, l := range strings.Split(string(b), "\n") {
		switch l {
		case "":
		case "====":
			out = append(out, cur)
			cur = nil
		default:
			a, err := base64.StdEncoding.DecodeString(l)
			if err != nil {
				f.t.Fatal(err)
			}
			cur = append(cur, string(a))
		}
	}
	return out
}

// argAfter is the value after name in args ("" when absent).
func argAfter(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// promptRecords are the audit log's sign records with a prompt.
func promptRecords(t *testing.T, a *agentProc) []audit.Record {
	var out []audit.Record
	for _, r := range readAudit(t, a.Audit) {
		if r.Event == "sign" && r.Prompt != nil {
			out = append(out, r)
		}
	}
	return out
}

func outcomesOf(recs []audit.Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, fmt.Sprintf("%s:%s/%d", r.Decision, r.Prompt.Outcome, r.Prompt.RememberS))
	}
	return strings.Join(s, " ")
}

// signWith signs a file with ssh-keygen -Y sign run as prog (a path to
// ssh-keygen or a copy of it) through the agent.
func signWith(a *agentProc, prog, pub, dir, name string) (string, int) {
	msg := filepath.Join(dir, name)
	os.WriteFile(msg, []byte(name), 0o644)
	return a.run(prog, "-Y", "sign", "-f", pub, "-n", "file", msg)
}

// addKey adds a fresh key (with ssh-add's extra flags) and returns the
// path of its public key, alone in a folder so that ssh-keygen signs
// through the agent.
func addKey(t *testing.T, a *agentProc, name string, flags ...string) string {
	dir := t.TempDir()
	k := newKey(t, dir, name, "ed25519", 0)
	a.mustRun("ssh-add", append(flags, k)...)
	os.Remove(k)
	return k + ".pub"
}

// The three choices appear only where they fit: a confirm policy with a
// zenity prompt offers "Allow ssh-keygen for 10 minutes" (remember unset)
// or for the policy's remember; a key added with ssh-add -c, and a login
// through a forwarded agent, get the yes/no question of before.
func TestI14bChoicesOnlyWhereTheyFit(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatal(err)
	}
	keygen, _ = filepath.EvalSymlinks(keygen)
	work := t.TempDir()

	t.Run("confirm policy", func(t *testing.T) {
		z := newFakeZenity(t)
		a := startAgent(t, agentOpts{policy: "prompt = \"zenity\"\n[defaults]\nconfirm = \"always\"\n", env: z.env()})
		plain := addKey(t, a, "plain")
		asked := addKey(t, a, "asked", "-c")

		z.answer("program")
		if out, code := signWith(a, keygen, plain, work, "m1"); code != 0 {
			t.Fatalf("Allow ssh-keygen for 10 minutes did not sign: %s", out)
		}
		calls := z.calls()
		if len(calls) != 1 {
			t.Fatalf("%d prompts, want 1", len(calls))
		}
		c := calls[0]
		for name, want := range map[string]string{
			"--extra-button": "Allow ssh-keygen for 10 minutes",
			"--ok-label":     "Allow once",
			"--cancel-label": "Deny",
		} {
			if got := argAfter(c, name); got != want {
				t.Errorf("zenity %s %q, want %q", name, got, want)
			}
		}
		if !slices.Contains(c, "--default-cancel") {
			t.Errorf("Deny is not the default: %q", c)
		}
		text := argAfter(c, "--text")
		for _, want := range []string{`"plain"`, "By: ssh-keygen (", `"Allow once" covers this request only.`,
			`"Allow ssh-keygen for 10 minutes" also lets ` + keygen + " use this key for the same purpose and path for 10 minutes without asking."} {
			if !strings.Contains(text, want) {
				t.Errorf("prompt text lacks %q:\n%s", want, text)
			}
		}
		if out, code := signWith(a, keygen, plain, work, "m2"); code != 0 {
			t.Fatalf("remembered program did not sign: %s", out)
		}
		if n := len(z.calls()); n != 1 {
			t.Errorf("the same program was asked again (%d prompts)", n)
		}

		// ssh-add -c: every use is asked, yes/no only.
		z.answer("once")
		if out, code := signWith(a, keygen, asked, work, "m3"); code != 0 {
			t.Fatalf("a yes to an ssh-add -c key did not sign: %s", out)
		}
		z.answer("program")
		if out, code := signWith(a, keygen, asked, work, "m4"); code == 0 {
			t.Fatalf("an ssh-add -c key signed without a yes: %s", out)
		}
		calls = z.calls()
		if len(calls) != 3 {
			t.Fatalf("%d prompts, want 3", len(calls))
		}
		for _, c := range calls[1:] {
			if slices.Contains(c, "--extra-button") || argAfter(c, "--ok-label") != "Allow" ||
				!strings.HasSuffix(argAfter(c, "--text"), "Nothing is remembered.") {
				t.Errorf("ssh-add -c key: not the yes/no question: %q", c)
			}
		}
		recs := promptRecords(t, a)
		if got, want := outcomesOf(recs), "allowed:yes-program/600 allowed:remembered/0 allowed:yes/0 denied:no/0"; got != want {
			t.Errorf("audit prompt outcomes %s, want %s", got, want)
		}
		if len(recs) > 0 && (recs[0].Client == nil || recs[0].Client.Exe != keygen) {
			t.Errorf("audit client %+v, want exe %s", recs[0].Client, keygen)
		}
	})

	t.Run("remember sets N", func(t *testing.T) {
		z := newFakeZenity(t)
		a := startAgent(t, agentOpts{policy: "prompt = \"zenity\"\n[defaults]\nconfirm = \"always\"\nremember = \"3m\"\n", env: z.env()})
		plain := addKey(t, a, "plain")
		z.answer("program")
		if out, code := signWith(a, keygen, plain, work, "r1"); code != 0 {
			t.Fatalf("sign: %s", out)
		}
		calls := z.calls()
		if len(calls) != 1 || argAfter(calls[0], "--extra-button") != "Allow ssh-keygen for 3 minutes" {
			t.Fatalf("prompts %q, want one offering 3 minutes", calls)
		}
		if got, want := outcomesOf(promptRecords(t, a)), "allowed:yes-program/180"; got != want {
			t.Errorf("audit %s, want %s", got, want)
		}
	})

	t.Run("forwarded agent", func(t *testing.T) {
		z := newFakeZenity(t)
		n := newSSHNet(t, "jump", "target")
		a := startAgent(t, agentOpts{policy: n.policy("prompt = \"zenity\"\n[defaults]\nconfirm = \"forwarded\"\n"), env: z.env()})
		k := newKey(t, t.TempDir(), "fwd", "ed25519", 0)
		n.authorize(k + ".pub")
		a.mustRun("ssh-add", k)
		os.Remove(k)
		z.answer("once")
		out, code := n.ssh(a, "-A", "jump", n.sshCmd("target", "echo", "reached"))
		if code != 0 || !strings.Contains(out, "reached") {
			t.Fatalf("forwarded login with Allow: exit %d\n%s", code, out)
		}
		calls := z.calls()
		if len(calls) != 1 {
			t.Fatalf("%d prompts, want 1", len(calls))
		}
		if slices.Contains(calls[0], "--extra-button") || argAfter(calls[0], "--ok-label") != "Allow" {
			t.Errorf("a forwarded request was offered choices: %q", calls[0])
		}
		if text := argAfter(calls[0], "--text"); !strings.Contains(text, "here → jump (forwarded) → target") {
			t.Errorf("prompt text:\n%s", text)
		}
	})
}

// A real zenity under Xvfb, answered with xdotool like a person would:
// "Allow ssh-keygen for 10 minutes" lets ssh-keygen sign again without a
// prompt, while a copy of ssh-keygen elsewhere (same name, other
// executable) is still asked; "Allow once" covers one request; Deny is
// what Return and Escape mean.
func TestI14bZenityThreeChoices(t *testing.T) {
	need(t, "zenity", "zenity")
	need(t, "xdotool", "xdotool")
	need(t, "import", "imagemagick")
	display := startXvfb(t)
	a := startAgent(t, agentOpts{
		policy: "prompt = \"zenity\"\nconfirm_timeout = \"90s\"\n[defaults]\nconfirm = \"always\"\n",
		env:    []string{"DISPLAY=" + display},
	})
	pub := addKey(t, a, "work")
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatal(err)
	}
	keygen, _ = filepath.EvalSymlinks(keygen)
	// The same program under the same name, but another executable.
	other := filepath.Join(t.TempDir(), "ssh-keygen")
	b, err := os.ReadFile(keygen)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	shots := artifactDir(t)

	type result struct {
		out  string
		code int
	}
	start := func(prog, name string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			msg := filepath.Join(work, name)
			os.WriteFile(msg, []byte(name), 0o644)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, prog, "-Y", "sign", "-f", pub, "-n", "file", msg)
			cmd.Env = a.env()
			out, err := cmd.CombinedOutput()
			code := 0
			if err != nil {
				code = -1
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
			}
			ch <- result{string(out), code}
		}()
		return ch
	}
	wait := func(ch <-chan result) result {
		select {
		case r := <-ch:
			return r
		case <-time.After(120 * time.Second):
			t.Fatal("ssh-keygen did not finish")
		}
		return result{}
	}
	// answer waits for the prompt window, screenshots it, and presses
	// keys in it. With --default-cancel, Deny has the focus: Shift+Tab
	// reaches the extra button on its left, Tab "Allow once" on its right.
	answer := func(shot string, keys ...string) {
		win := waitWindow(t, display, "zenity")
		time.Sleep(700 * time.Millisecond) // let it draw
		if shot != "" {
			path := filepath.Join(shots, shot)
			xrun(t, display, "import", "-window", "root", path)
			t.Logf("screenshot of the prompt: %s", path)
		}
		xrun(t, display, "xdotool", "windowfocus", "--sync", win)
		xrun(t, display, "xdotool", append([]string{"key", "--delay", "150"}, keys...)...)
	}
	noWindow := func() bool {
		cmd := exec.Command("xdotool", "search", "--onlyvisible", "--class", "zenity")
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		out, _ := cmd.Output()
		return strings.TrimSpace(string(out)) == ""
	}

	// 1. ssh-keygen: "Allow ssh-keygen for 10 minutes".
	ch := start(keygen, "m1")
	answer("i14b-choices-prompt.png", "shift+Tab", "Return")
	if r := wait(ch); r.code != 0 {
		t.Fatalf("Allow ssh-keygen for 10 minutes: ssh-keygen failed: %s", r.out)
	}
	// 2. ssh-keygen again: no prompt.
	ch = start(keygen, "m2")
	select {
	case r := <-ch:
		if r.code != 0 {
			t.Fatalf("ssh-keygen after Allow for 10 minutes failed: %s", r.out)
		}
	case <-time.After(20 * time.Second):
		if !noWindow() {
			xrun(t, display, "xdotool", "key", "Escape")
		}
		t.Fatal("ssh-keygen was asked again after Allow ssh-keygen for 10 minutes")
	}
	if !noWindow() {
		t.Error("a prompt window is up after a remembered request")
	}
	// 3. The copy is another program: asked. "Allow once".
	ch = start(other, "m3")
	answer("i14b-choices-other-program.png", "Tab", "Return")
	if r := wait(ch); r.code != 0 {
		t.Fatalf("Allow once: the copy failed: %s", r.out)
	}
	// 4. "Allow once" covered one request: asked again; Return is Deny.
	ch = start(other, "m4")
	answer("", "Return")
	if r := wait(ch); r.code == 0 {
		t.Fatalf("Return (Deny) signed: %s", r.out)
	}
	// 5. Escape is Deny too.
	ch = start(other, "m5")
	answer("", "Escape")
	if r := wait(ch); r.code == 0 {
		t.Fatalf("Escape signed: %s", r.out)
	}

	recs := promptRecords(t, a)
	if got, want := outcomesOf(recs), "allowed:yes-program/600 allowed:remembered/0 allowed:yes/0 denied:no/0 denied:no/0"; got != want {
		t.Fatalf("audit prompt outcomes %s, want %s", got, want)
	}
	for i, want := range []string{keygen, keygen, other, other, other} {
		if c := recs[i].Client; c == nil || c.Exe != want {
			t.Errorf("record %d: client %+v, want exe %s", i, c, want)
		}
	}
}
