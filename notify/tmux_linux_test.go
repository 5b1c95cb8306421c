package notify

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary is also the popup's helper: run with this first
// argument it is `safe-agent tmux-prompt TEXT ANSWER`; with the slow one
// it discards keys for 2s instead of TypeAhead, so that a loaded machine
// cannot make the type-ahead test pass keys through by being slow.
const (
	tmuxHelperArg     = "notify-test-tmux-prompt"
	tmuxSlowHelperArg = "notify-test-tmux-prompt-slow"
)

func init() {
	if len(os.Args) == 4 && os.Args[1] == tmuxHelperArg {
		os.Exit(RunTmuxPrompt(os.Stdin, os.Stdout, os.Args[2], os.Args[3], TypeAhead))
	}
	if len(os.Args) == 4 && os.Args[1] == tmuxSlowHelperArg {
		os.Exit(RunTmuxPrompt(os.Stdin, os.Stdout, os.Args[2], os.Args[3], 2*time.Second))
	}
}

// tmuxBench is a real tmux server with a session, and a terminal attached
// to it: another tmux server (outer) whose pane runs `tmux attach`, so that
// capture-pane of the outer pane shows the screen a person would see,
// popups included (capture-pane of the inner pane does not show popups).
type tmuxBench struct {
	t            *testing.T
	inner, outer string
	target       TmuxTarget
}

func newTmuxBench(t *testing.T) *tmuxBench {
	t.Helper()
	tmux := needProgram(t, "tmux", "tmux")
	dir, err := os.MkdirTemp("", "tmx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &tmuxBench{t: t, inner: filepath.Join(dir, "in"), outer: filepath.Join(dir, "out")}
	b.run(b.inner, "new-session", "-d", "-s", "work", "-x", "100", "-y", "30", "sleep 600")
	t.Cleanup(func() { exec.Command(tmux, "-S", b.inner, "kill-server").Run() })
	b.run(b.outer, "new-session", "-d", "-x", "100", "-y", "30", "env -u TMUX tmux -S "+b.inner+" attach -t work")
	t.Cleanup(func() { exec.Command(tmux, "-S", b.outer, "kill-server").Run() })
	b.waitFor("a client attached", func() bool {
		return strings.TrimSpace(b.run(b.inner, "list-clients", "-F", "#{client_name}")) != ""
	})
	pane := strings.TrimSpace(b.run(b.inner, "display-message", "-p", "-t", "work", "#{pane_id}"))
	session := strings.TrimSpace(b.run(b.inner, "display-message", "-p", "-t", "work", "#{session_id}"))
	b.target = TmuxTarget{Socket: b.inner, Pane: pane, Session: session}
	return b
}

func (b *tmuxBench) run(sock string, args ...string) string {
	b.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the person sees.
func (b *tmuxBench) screen() string {
	out, _ := exec.Command("tmux", "-S", b.outer, "capture-pane", "-p", "-t", "%0").Output()
	return string(out)
}

func (b *tmuxBench) keys(keys ...string) {
	b.run(b.outer, append([]string{"send-keys", "-t", "%0"}, keys...)...)
}

func (b *tmuxBench) waitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s; screen:\n%s", what, b.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *tmuxBench) confirmer(helperArg string) *Tmux {
	b.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.t.Fatal(err)
	}
	c, err := NewTmux(b.target, TmuxOptions{Helper: []string{exe, helperArg}, Env: Env{Path: os.Getenv("PATH")}, Dir: b.t.TempDir()})
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

type confirmResult struct {
	yes bool
	err error
}

func (b *tmuxBench) ask(ctx context.Context, text string) chan confirmResult {
	return b.askWith(ctx, text, tmuxHelperArg)
}

func (b *tmuxBench) askWith(ctx context.Context, text, helperArg string) chan confirmResult {
	c := b.confirmer(helperArg)
	ch := make(chan confirmResult, 1)
	go func() {
		yes, err := c.Confirm(ctx, text)
		ch <- confirmResult{yes, err}
	}()
	return ch
}

func waitResult(t *testing.T, ch chan confirmResult) confirmResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("Confirm did not return")
	}
	return confirmResult{}
}

const tmuxText = "Allow use of key \"work\" (SHA256:abc)?\n\nTo: log in as git on github.com\nPath: here → github.com\nBy: ssh (42) ← bash (7)\n\nNothing is remembered."

func TestTmuxPopupAsksAndTakesYesAndNo(t *testing.T) {
	b := newTmuxBench(t)
	for _, tc := range []struct {
		keys []string
		want bool
	}{
		{[]string{"y", "Enter"}, true},
		{[]string{"Enter"}, false}, // the default is no
		{[]string{"n", "Enter"}, false},
		{[]string{"yy", "Enter"}, false}, // only y or yes
	} {
		ch := b.ask(context.Background(), tmuxText)
		b.waitFor("the question", func() bool { return strings.Contains(b.screen(), "[y/N]") })
		scr := b.screen()
		for _, want := range []string{"safe-agent: allow key use?", `Allow use of key "work" (SHA256:abc)?`, "To: log in as git on github.com", "By: ssh (42) ← bash (7)"} {
			if !strings.Contains(scr, want) {
				t.Errorf("popup does not show %q:\n%s", want, scr)
			}
		}
		b.keys(tc.keys...)
		r := waitResult(t, ch)
		if r.err != nil || r.yes != tc.want {
			t.Errorf("keys %q: got (%v, %v), want (%v, nil)", tc.keys, r.yes, r.err, tc.want)
		}
		b.waitFor("the popup to close", func() bool { return !strings.Contains(b.screen(), "safe-agent") })
	}
}

func TestTmuxPopupClosesAtTheDeadline(t *testing.T) {
	b := newTmuxBench(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	ch := b.ask(ctx, tmuxText)
	var r confirmResult
	shown := false
	for done := false; !done; {
		select {
		case r = <-ch:
			done = true
		case <-time.After(50 * time.Millisecond):
			shown = shown || strings.Contains(b.screen(), "Allow use of key")
		}
	}
	if !shown {
		t.Error("the popup never showed")
	}
	if r.yes || !errors.Is(r.err, ErrTimeout) {
		t.Errorf("got (%v, %v), want a timeout", r.yes, r.err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("took %v for a 3s deadline", d)
	}
	b.waitFor("the popup to close", func() bool { return !strings.Contains(b.screen(), "safe-agent") })
	// A late "y" lands in the pane, not in a prompt.
	b.keys("y", "Enter")
}

// Keys typed before the question is up (the person was typing in the
// pane) must not answer it.
func TestTmuxPopupIgnoresTypeAhead(t *testing.T) {
	b := newTmuxBench(t)
	ch := b.askWith(context.Background(), tmuxText, tmuxSlowHelperArg)
	b.waitFor("the popup", func() bool { return strings.Contains(b.screen(), "Allow use of key") })
	b.keys("y", "Enter")
	b.waitFor("the question", func() bool { return strings.Contains(b.screen(), "[y/N]") })
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("answered by type-ahead: (%v, %v)", r.yes, r.err)
	default:
	}
	b.keys("n", "Enter")
	if r := waitResult(t, ch); r.yes {
		t.Errorf("got yes, want no")
	}
}

// tmux's display-popup exits 0 without showing anything when the client
// already has a popup open: that must not count as a yes.
func TestTmuxPopupBusyClientIsNoYes(t *testing.T) {
	b := newTmuxBench(t)
	client := strings.TrimSpace(b.run(b.inner, "list-clients", "-F", "#{client_name}"))
	go exec.Command("tmux", "-S", b.inner, "display-popup", "-E", "-c", client, "sh", "-c", "echo other popup; sleep 30").Run()
	b.waitFor("the other popup", func() bool { return strings.Contains(b.screen(), "other popup") })
	r := waitResult(t, b.ask(context.Background(), tmuxText))
	if r.yes || r.err == nil || !strings.Contains(r.err.Error(), "not shown") {
		t.Errorf("got (%v, %v), want a refusal saying the popup was not shown", r.yes, r.err)
	}
}

func TestTmuxNoAttachedClient(t *testing.T) {
	b := newTmuxBench(t)
	b.run(b.outer, "kill-server")
	b.waitFor("the client to leave", func() bool {
		return strings.TrimSpace(b.run(b.inner, "list-clients")) == ""
	})
	r := waitResult(t, b.ask(context.Background(), tmuxText))
	if r.yes || r.err == nil || !strings.Contains(r.err.Error(), "no terminal is attached to tmux session") {
		t.Errorf("got (%v, %v)", r.yes, r.err)
	}
}

// fakeProc writes /proc/PID/{stat,environ} files for findTmux.
func fakeProc(t *testing.T, proc string, pid, ppid, tty int, env ...string) {
	t.Helper()
	d := filepath.Join(proc, strconv.Itoa(pid))
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (a b) c) S " + strconv.Itoa(ppid) + " 1 1 " + strconv.Itoa(tty) + " 0 0\n"
	if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "environ"), []byte(strings.Join(env, "\x00")+"\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFindTmuxReadsClientOrAncestors(t *testing.T) {
	b := newTmuxBench(t) // a real socket of this user
	uid := os.Geteuid()
	proc := t.TempDir()
	tmuxVar := "TMUX=" + b.inner + ",999,3"
	fakeProc(t, proc, 10, 9, 34816)                                    // ssh: a tty, no TMUX (env cleaned)
	fakeProc(t, proc, 9, 8, 34816, "HOME=/h", tmuxVar, "TMUX_PANE=%7") // git, in tmux
	fakeProc(t, proc, 20, 9, 0)                                        // no controlling terminal

	got, err := findTmux(proc, 10, uid)
	if err != nil {
		t.Fatal(err)
	}
	want := TmuxTarget{Socket: b.inner, Session: "$3", Pane: "%7", PID: 9}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	if _, err := findTmux(proc, 20, uid); !errors.Is(err, ErrNoTmux) || !strings.Contains(err.Error(), "no controlling terminal") {
		t.Errorf("no tty: err = %v", err)
	}
	if _, err := findTmux(proc, 10, uid+1); err == nil || !strings.Contains(err.Error(), "is not a socket of uid") {
		t.Errorf("someone else's socket: err = %v", err)
	}
	fakeProc(t, proc, 30, 1, 34816, "TMUX=relative/sock,1,0")
	fakeProc(t, proc, 31, 1, 34816, "TMUX="+filepath.Join(proc, "30", "stat")+",1,0")
	if _, err := findTmux(proc, 30, uid); !errors.Is(err, ErrNoTmux) {
		t.Errorf("malformed TMUX: err = %v", err)
	}
	if _, err := findTmux(proc, 31, uid); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("TMUX names a plain file: err = %v", err)
	}
}

func TestOrTmuxOnlyWithoutDisplay(t *testing.T) {
	target := &TmuxTarget{Socket: "/nonexistent", Session: "$0"}
	o := TmuxOptions{Helper: []string{"/bin/true"}, Env: Env{Path: os.Getenv("PATH")}}
	needProgram(t, "tmux", "tmux")
	c, err := OrTmux(Refuse(ErrNoDisplay), nil, target, o)
	if _, ok := c.(*Tmux); !ok || err != nil {
		t.Errorf("no display: got %v, %v; want the tmux popup", c, err)
	}
	c, err = OrTmux(nil, errors.New("zenity prompt: "+ErrNoDisplay.Error()), target, o)
	if _, ok := c.(*Tmux); ok {
		t.Errorf("an error that only looks like no display: got the tmux popup")
	}
	c, err = OrTmux(nil, errors.Join(errors.New("zenity prompt"), ErrNoDisplay), target, o)
	if _, ok := c.(*Tmux); !ok || err != nil {
		t.Errorf("explicit prompt kind without display: got %v, %v", c, err)
	}
	c, _ = OrTmux(Refuse(ErrNoProgram), nil, target, o)
	if _, ok := c.(*Tmux); ok {
		t.Errorf("a display without a prompt program: got the tmux popup")
	}
	c, _ = OrTmux(Refuse(ErrNoDisplay), nil, nil, o)
	if _, ok := c.(*Tmux); ok {
		t.Errorf("no tmux target: got the tmux popup")
	}
}
