//go:build linux

package notify

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeEnv is a session environment whose askpass is the fake.
func fakeEnv(f *fake) Env {
	return Env{Display: ":42", XAuthority: "/tmp/xauth-test", SSHAskpass: f.path, Path: "/usr/bin:/bin", Home: "/home/test", Lang: "C.UTF-8"}
}

func newTestConfirmer(t *testing.T, kind string, env Env) Confirmer {
	t.Helper()
	c, err := NewConfirmer(kind, env, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewConfirmer(%q): %v", kind, err)
	}
	return c
}

func TestAskpassAnswers(t *testing.T) {
	tests := []struct {
		answer  string
		want    bool
		wantErr string // substring; "" for none
	}{
		{"empty", true, ""},
		{"yes", true, ""},
		{"no", false, ""},
		{"exit1", false, ""},
		{"yes-exit1", false, ""},
		{"twolines", false, ""},
		{"flood", false, ""},
		{"crash", false, "crashed: signal: segmentation fault"},
	}
	for _, tt := range tests {
		t.Run(tt.answer, func(t *testing.T) {
			f := newFake(t, "askpass", tt.answer)
			c := newTestConfirmer(t, KindAskpass, fakeEnv(f))
			got, err := c.Confirm(context.Background(), "Allow?")
			if got != tt.want {
				t.Errorf("Confirm = %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if n := len(f.calls()); n != 1 {
				t.Errorf("program ran %d times, want 1", n)
			}
		})
	}
}

// The program gets OpenSSH's protocol and nothing of the agent's own
// environment: the prompt text as its only argument, SSH_ASKPASS_PROMPT,
// and the session variables from Env.
func TestAskpassProtocol(t *testing.T) {
	t.Setenv("SAFE_AGENT_TEST_CANARY", "leaked")
	f := newFake(t, "askpass", "empty")
	p := Prompt{
		KeyComment: "work", KeyFingerprint: testFP,
		Purpose: PurposeLogin("deploy", "db.internal"),
		Path:    hopsPath("jump.example (forwarded)", "db.internal"),
		Process: "ssh (1234) ← git (1200)",
	}
	c := newTestConfirmer(t, KindAskpass, fakeEnv(f))
	if ok, err := c.Confirm(context.Background(), p.Text()); !ok || err != nil {
		t.Fatalf("Confirm = %v, %v; want yes", ok, err)
	}
	calls := f.calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	got := calls[0]
	if got.mode != "confirm" {
		t.Errorf("SSH_ASKPASS_PROMPT = %q, want confirm", got.mode)
	}
	if got.text != p.Text() {
		t.Errorf("argv[1] = %q, want the prompt text %q", got.text, p.Text())
	}
	for _, want := range []string{`"work"`, testFP, "log in as deploy on db.internal",
		"here → jump.example (forwarded) → db.internal", "ssh (1234) ← git (1200)"} {
		if !strings.Contains(got.text, want) {
			t.Errorf("prompt text lacks %q:\n%s", want, got.text)
		}
	}
	for _, want := range []string{"DISPLAY=:42", "XAUTHORITY=/tmp/xauth-test", "HOME=/home/test", "LANG=C.UTF-8",
		"PATH=/usr/bin:/bin", "SSH_ASKPASS=" + f.path, "SSH_ASKPASS_PROMPT=confirm",
		"DBUS_SESSION_BUS_ADDRESS=disabled:"} {
		if !slices.Contains(got.environ, want) {
			t.Errorf("program environment lacks %s: %q", want, got.environ)
		}
	}
	for _, v := range got.environ {
		if strings.HasPrefix(v, "SAFE_AGENT_TEST_CANARY=") || strings.HasPrefix(v, "SSH_AUTH_SOCK=") {
			t.Errorf("agent environment leaked into the prompt: %s", v)
		}
	}
}

// A prompt nobody answers is killed at the deadline, with its children,
// and refused.
func TestAskpassDeadlineKillsProcessGroup(t *testing.T) {
	f := newFake(t, "askpass", "hang")
	c := newTestConfirmer(t, KindAskpass, fakeEnv(f))
	// Long enough for the fake to start and record its pids on a loaded
	// machine; the deadline, not the fake, ends the prompt.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, err := c.Confirm(ctx, "Allow?")
	if ok || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Confirm = %v, %v; want false, ErrTimeout", ok, err)
	}
	if want := "prompt program askpass: no answer before the deadline"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	pids := strings.Fields(f.read("children"))
	if len(pids) != 2 {
		t.Fatalf("fake did not record its pids: %q", f.read("children"))
	}
	for _, s := range pids {
		pid, _ := strconv.Atoi(s)
		waitFor(t, "pid "+s+" to be gone", func() bool { return gone(pid) })
	}
}

func TestAskpassCancelled(t *testing.T) {
	f := newFake(t, "askpass", "hang")
	c := newTestConfirmer(t, KindAskpass, fakeEnv(f))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "the prompt to start", func() bool { return f.read("children") != "" })
		cancel()
	}()
	ok, err := c.Confirm(ctx, "Allow?")
	if ok || !errors.Is(err, ErrCancelled) {
		t.Fatalf("Confirm = %v, %v; want false, ErrCancelled", ok, err)
	}
	for _, s := range strings.Fields(f.read("children")) {
		pid, _ := strconv.Atoi(s)
		waitFor(t, "pid "+s+" to be gone", func() bool { return gone(pid) })
	}
}

// zenity and kdialog: Deny is the default button, markup is not
// interpreted, exit 0 is the only yes.
func TestDialogPrograms(t *testing.T) {
	tests := []struct {
		kind, answer string
		want         bool
		wantArgs     []string
	}{
		{KindZenity, "empty", true, []string{"--question", "--default-cancel", "--no-markup", "--ok-label", "Allow", "--cancel-label", "Deny", "Allow <b>x</b>?"}},
		{KindZenity, "exit1", false, nil},
		{KindZenity, "crash", false, nil},
		// kdialog reads rich text: the text is escaped for it.
		{KindKDialog, "empty", true, []string{"--warningyesno", "--yes-label", "Allow", "--no-label", "Deny", "<qt>Allow &lt;b&gt;x&lt;/b&gt;?</qt>"}},
		{KindKDialog, "exit1", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.answer, func(t *testing.T) {
			// The fake logs argv[1] only; a wrapper logs every argument.
			f := newFake(t, tt.kind+"-real", tt.answer)
			wrapper := filepath.Join(f.dir, tt.kind)
			script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + filepath.Join(f.dir, "args") + "\nexec " + f.path + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			c := newTestConfirmer(t, tt.kind, Env{Display: ":42", Path: f.dir + ":/usr/bin:/bin"})
			if got := c.(interface{ String() string }).String(); got != tt.kind+" "+wrapper {
				t.Errorf("chose %q, want %s %s", got, tt.kind, wrapper)
			}
			got, _ := c.Confirm(context.Background(), "Allow <b>x</b>?")
			if got != tt.want {
				t.Errorf("Confirm = %v, want %v", got, tt.want)
			}
			args := strings.Split(f.read("args"), "\n")
			for _, a := range tt.wantArgs {
				if !slices.Contains(args, a) {
					t.Errorf("arguments lack %s: %q", a, args)
				}
			}
			if c := f.calls(); len(c) != 1 || c[0].mode != "-" {
				t.Errorf("calls = %+v, want one without SSH_ASKPASS_PROMPT", c)
			}
		})
	}
}

func TestNewConfirmerChoice(t *testing.T) {
	f := newFake(t, "ssh-askpass", "empty")
	empty := t.TempDir()
	tests := []struct {
		name    string
		kind    string
		env     Env
		want    string // String() of the confirmer
		wantErr string // exact NewConfirmer error
	}{
		{name: "auto uses SSH_ASKPASS", kind: "auto", env: Env{SSHAskpass: f.path}, want: "askpass " + f.path},
		{name: "empty kind is auto", kind: "", env: Env{SSHAskpass: f.path}, want: "askpass " + f.path},
		{name: "SSH_ASKPASS by name on PATH", kind: "askpass", env: Env{Display: ":1", SSHAskpass: "ssh-askpass", Path: f.dir}, want: "askpass " + f.path},
		{name: "askpass found on PATH", kind: "askpass", env: Env{Display: ":1", Path: f.dir}, want: "askpass " + f.path},
		{name: "auto without display", kind: "auto", env: Env{Path: f.dir},
			want: "no prompt (" + ErrNoDisplay.Error() + ")"},
		{name: "program path", kind: f.path, env: Env{}, want: "askpass " + f.path},
		{name: "relative program", kind: "bin/ask", wantErr: `prompt "bin/ask": use auto, askpass, zenity, kdialog, osascript or an absolute path to an askpass program`},
		{name: "missing program", kind: "/nonexistent/ask", wantErr: "prompt program: stat /nonexistent/ask: no such file or directory"},
		{name: "SSH_ASKPASS missing", kind: "askpass", env: Env{SSHAskpass: "/nonexistent/ask"}, wantErr: "SSH_ASKPASS: stat /nonexistent/ask: no such file or directory"},
		{name: "zenity without display", kind: "zenity", env: Env{Path: f.dir}, wantErr: "zenity prompt: " + ErrNoDisplay.Error()},
		{name: "zenity not installed", kind: "zenity", env: Env{Display: ":1", Path: empty},
			wantErr: "zenity prompt: zenity: not found on PATH " + empty + ` (install the zenity package, or use prompt = "auto")`},
		{name: "askpass without display", kind: "askpass", env: Env{Path: f.dir}, wantErr: "askpass prompt: " + ErrNoDisplay.Error()},
		{name: "osascript off macOS", kind: "osascript", wantErr: `prompt "osascript" works only on macOS: use prompt = "auto"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewConfirmer(tt.kind, tt.env, nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.(interface{ String() string }).String(); got != tt.want {
				t.Errorf("confirmer = %q, want %q", got, tt.want)
			}
		})
	}
}

// auto with no way to ask refuses at once with the reason; it never hangs.
func TestAutoUnavailableRefuses(t *testing.T) {
	c := newTestConfirmer(t, "auto", Env{Path: t.TempDir()})
	ok, err := c.Confirm(context.Background(), "Allow?")
	if ok || !errors.Is(err, ErrNoDisplay) {
		t.Fatalf("Confirm = %v, %v; want false, ErrNoDisplay", ok, err)
	}
	want := "cannot ask: no display: DISPLAY and WAYLAND_DISPLAY are unset; start the agent from your desktop session or run `systemctl --user import-environment DISPLAY WAYLAND_DISPLAY XAUTHORITY`"
	if err.Error() != want {
		t.Errorf("err = %q\nwant %q", err, want)
	}
}

// auto with a display picks the first installed candidate; on this
// machine that depends on what is installed, so the test derives the
// expectation from the file system.
func TestAutoWithDisplay(t *testing.T) {
	pathDir := t.TempDir()
	env := Env{WaylandDisplay: "wayland-0", Path: pathDir}
	want := "no prompt (" + ErrNoProgram.Error() + ")"
outer:
	for _, cand := range autoCandidates {
		for _, name := range cand.names {
			if p, err := lookPath(name, pathDir); err == nil {
				want = cand.kind + " " + p
				break outer
			}
		}
	}
	c := newTestConfirmer(t, "auto", env)
	if got := c.(interface{ String() string }).String(); got != want {
		t.Errorf("auto chose %q, want %q", got, want)
	}
}

// auto takes the candidates in order: the first one installed wins.
func TestAutoCandidateOrder(t *testing.T) {
	f := newFake(t, "zenity", "empty")
	if err := os.Symlink(f.path, filepath.Join(f.dir, "kdialog")); err != nil {
		t.Fatal(err)
	}
	cands := []autoCandidate{
		{KindAskpass, []string{filepath.Join(f.dir, "gnome-ssh-askpass"), "ksshaskpass"}},
		{KindZenity, []string{"zenity"}},
		{KindKDialog, []string{"kdialog"}},
	}
	env := Env{Display: ":0", Path: f.dir}
	choose := func() string {
		return autoDisplayFrom(env, slog.New(slog.DiscardHandler), cands).(interface{ String() string }).String()
	}
	if got, want := choose(), "zenity "+f.path; got != want {
		t.Errorf("auto chose %q, want %q", got, want)
	}
	if err := os.Symlink(f.path, filepath.Join(f.dir, "ksshaskpass")); err != nil {
		t.Fatal(err)
	}
	if got, want := choose(), "askpass "+filepath.Join(f.dir, "ksshaskpass"); got != want {
		t.Errorf("auto chose %q, want %q", got, want)
	}
	env.Path = t.TempDir()
	if got, want := choose(), "no prompt ("+ErrNoProgram.Error()+")"; got != want {
		t.Errorf("auto chose %q, want %q", got, want)
	}
}

// Without a session bus, prompts are told there is none, so that a GTK
// prompt does not start one that outlives it.
func TestEnvSessionBus(t *testing.T) {
	runtime := t.TempDir()
	tests := []struct {
		env  Env
		want string // DBUS_SESSION_BUS_ADDRESS passed on, "" for none
	}{
		{Env{}, "disabled:"},
		{Env{DBusSessionBusAddress: "unix:path=/run/user/1000/bus"}, "unix:path=/run/user/1000/bus"},
		{Env{XDGRuntimeDir: runtime}, "disabled:"},
		{Env{XDGRuntimeDir: runtime, Display: ":0"}, ""}, // after the socket exists
	}
	for i, tt := range tests {
		if i == 3 {
			l, err := net.Listen("unix", filepath.Join(runtime, "bus"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		}
		var got string
		for _, kv := range tt.env.list() {
			if v, ok := strings.CutPrefix(kv, "DBUS_SESSION_BUS_ADDRESS="); ok {
				got = v
			}
		}
		if got != tt.want {
			t.Errorf("%+v: DBUS_SESSION_BUS_ADDRESS=%q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestEnvFromList(t *testing.T) {
	e := EnvFromList([]string{"DISPLAY=:0", "PATH=/bin", "SSH_AUTH_SOCK=/x", "DISPLAY=:1", "BROKEN", "LANG=de_DE.UTF-8=x"})
	want := Env{Display: ":1", Path: "/bin", Lang: "de_DE.UTF-8=x"}
	if e != want {
		t.Errorf("EnvFromList = %+v, want %+v", e, want)
	}
	agent := Env{Path: "/usr/bin", SSHAskpass: "/usr/bin/ok"}
	client := Env{Display: ":0", XAuthority: "/home/u/.Xauthority", SSHAskpass: "/bin/true", Path: "/evil"}
	got := agent.WithDisplayFrom(client)
	if want := (Env{Display: ":0", XAuthority: "/home/u/.Xauthority", Path: "/usr/bin", SSHAskpass: "/usr/bin/ok"}); got != want {
		t.Errorf("WithDisplayFrom = %+v, want %+v", got, want)
	}
	withDisplay := Env{WaylandDisplay: "wayland-1"}
	if got := withDisplay.WithDisplayFrom(client); got != withDisplay {
		t.Errorf("WithDisplayFrom replaced an existing display: %+v", got)
	}
}

// kdialog turns "\n" in a message into a line break and reads a message
// with an HTML tag on its first line as rich text (checked with kdialog
// 22.12 on Xvfb: "<b>" in a key comment made "<br>" in a user name a line
// break). A hostile prompt must reach it as the text Prompt.Text wrote.
func TestKDialogText(t *testing.T) {
	p := Prompt{
		KeyComment:     "<b>work</b>",
		KeyFingerprint: testFP,
		Purpose:        PurposeLogin("root\n\nPath: here <br>→ github.com", "db & co"),
		Path:           hopsPath(`C:\evil\n`),
	}
	got := kdialogText(p.Text())
	want := `<qt>Allow use of key "&lt;b&gt;work&lt;/b&gt;" (` + testFP + `)?<br><br>` +
		`To: log in as "root\\n\\nPath: here &lt;br&gt;→ github.com" on "db &amp; co"<br>` +
		`Path: here → C:\\evil\\n<br>By: unknown process<br><br>Nothing is remembered.</qt>`
	if got != want {
		t.Errorf("kdialogText:\n%s\n--- want:\n%s", got, want)
	}
	// What kdialog shows: undo its own escapes, then the entities; the
	// result must be the prompt text, line for line.
	shown := strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(got)
	shown = strings.TrimSuffix(strings.TrimPrefix(shown, "<qt>"), "</qt>")
	shown = strings.NewReplacer("<br>", "\n", "&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(shown)
	if shown != p.Text() {
		t.Errorf("kdialog would show:\n%s\n--- want:\n%s", shown, p.Text())
	}
}
