//go:build linux

package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive real prompt windows and a real notification daemon on
// a virtual X server. A missing program skips the test, or fails it when
// CI=true.

func needProgram(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (CI=true): install the Debian package %s", name, debianPackage)
		}
		t.Skipf("%s not found: install the Debian package %s", name, debianPackage)
	}
	return p
}

// artifactDir is where screenshots go: $SAFE_AGENT_ARTIFACTS/notify, or a
// temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SAFE_AGENT_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "notify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startXvfb starts a virtual X server on a free display (Xvfb picks it
// and reports it on -displayfd) and returns the display name.
func startXvfb(t *testing.T) string {
	t.Helper()
	xvfb := needProgram(t, "Xvfb", "xvfb")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// -noreset: by default an X server resets when its last client
	// disconnects, and a client connecting during the reset gets "cannot
	// open display". Between two prompts every client is gone, so without
	// it the next prompt failed now and then on a loaded machine.
	cmd := exec.Command(xvfb, "-displayfd", "3", "-noreset", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var n string
	select {
	case n = <-line:
	case <-time.After(10 * time.Second):
		t.Fatalf("Xvfb did not report a display: %s", stderr.String())
	}
	if n == "" {
		t.Fatalf("Xvfb failed: %s", stderr.String())
	}
	if _, err := os.Stat("/tmp/.X11-unix/X" + n); err != nil {
		t.Fatalf("Xvfb display :%s has no socket: %v", n, err)
	}
	return ":" + n
}

// x runs an X client on display and returns its output.
func x(t *testing.T, display string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func samplePrompt() Prompt {
	return Prompt{
		KeyComment:     "deploy key (work laptop)",
		KeyFingerprint: "SHA256:7pP8vXnP0uSHxP1gR1DxK1ABCDefghIJKLmnopqrstu",
		Purpose:        PurposeLogin("deploy", "db-primary.eu-west.internal.example.com"),
		Path:           hopsPath("jump.example.com (forwarded)", "bastion.internal (forwarded)", "db-primary.eu-west.internal.example.com"),
		Process:        "ssh (41234) ← git (41200) ← zsh (1000) ← tmux: server (900)",
		Remember:       5 * time.Minute,
		Reason:         "forwarded use of this key needs confirmation (confirm = \"forwarded\")",
	}
}

// A real prompt window: opened, photographed, answered with the keyboard.
func TestPromptWindow(t *testing.T) {
	const gnomeAskpass = "/usr/lib/openssh/gnome-ssh-askpass"
	needProgram(t, gnomeAskpass, "ssh-askpass-gnome")
	needProgram(t, "xdotool", "xdotool")
	needProgram(t, "import", "imagemagick")
	display := startXvfb(t)
	shots := artifactDir(t)
	tests := []struct {
		name    string
		kind    string
		program string // what auto/kind must choose
		keys    []string
		want    bool
	}{
		// gnome-ssh-askpass: Yes is the default button.
		{"gnome-askpass-return", "auto", "askpass " + gnomeAskpass, []string{"Return"}, true},
		{"gnome-askpass-escape", "auto", "askpass " + gnomeAskpass, []string{"Escape"}, false},
		// zenity: Deny is the default button; Tab moves to Allow.
		{"zenity-return", "zenity", "", []string{"Return"}, false},
		{"zenity-escape", "zenity", "", []string{"Escape"}, false},
		{"zenity-tab-return", "zenity", "", []string{"Tab", "Return"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.kind == "zenity" {
				needProgram(t, "zenity", "zenity")
			}
			env := Env{Display: display, Path: "/usr/bin:/bin", Home: t.TempDir(), Lang: "C.UTF-8"}
			c, err := NewConfirmer(tt.kind, env, slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			if tt.program != "" {
				if got := c.(fmt.Stringer).String(); got != tt.program {
					t.Fatalf("%s chose %q, want %q", tt.kind, got, tt.program)
				}
			}
			pids := make(chan int, 1)
			switch c := c.(type) {
			case *askpass:
				c.prog.started = func(pid int) { pids <- pid }
			case *dialog:
				c.prog.started = func(pid int) { pids <- pid }
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			type result struct {
				ok  bool
				err error
			}
			done := make(chan result, 1)
			go func() {
				ok, err := c.Confirm(ctx, samplePrompt().Text())
				done <- result{ok, err}
			}()
			var pid int
			select {
			case pid = <-pids:
			case r := <-done:
				t.Fatalf("prompt ended before it was shown: %v, %v", r.ok, r.err)
			}
			// A first GTK start on a busy machine can take seconds.
			// A first GTK start on a busy machine can take seconds. A program
			// that ends without a window is reported with its log, not as a
			// timeout.
			deadline := time.Now().Add(60 * time.Second)
			for {
				out, err := x(t, display, "xdotool", "search", "--onlyvisible", "--pid", fmt.Sprint(pid))
				if err == nil && out != "" {
					break
				}
				select {
				case r := <-done:
					t.Fatalf("the prompt program ended without showing a window: Confirm = %v, %v (its stderr is in the log above)", r.ok, r.err)
				default:
				}
				if time.Now().After(deadline) {
					tree, _ := x(t, display, "xwininfo", "-root", "-tree")
					t.Fatalf("timed out waiting for the prompt window of pid %d; windows on %s:\n%s", pid, display, tree)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(400 * time.Millisecond) // let it paint and grab the keyboard
			shot := filepath.Join(shots, "prompt-"+tt.name+".png")
			if out, err := x(t, display, "import", "-window", "root", shot); err != nil {
				t.Fatalf("screenshot: %v %s", err, out)
			}
			t.Logf("screenshot: %s", shot)
			if out, err := x(t, display, "xdotool", append([]string{"key", "--delay", "100"}, tt.keys...)...); err != nil {
				t.Fatalf("xdotool key: %v %s", err, out)
			}
			r := <-done
			if r.err != nil || r.ok != tt.want {
				t.Errorf("Confirm = %v, %v; want %v, nil", r.ok, r.err, tt.want)
			}
			// With no session bus in Env, the prompt must not have started
			// one (dbus-launch, with an accessibility bus "bus_N" for
			// display :N) that would outlive it.
			if p := processWith("at-spi/bus_" + strings.TrimPrefix(display, ":") + "\x00"); p != "" {
				t.Errorf("the prompt left a bus behind: %s", p)
			}
		})
	}
}

// A real notification: under a private session bus with dunst running on
// a virtual display, a refusal notice reaches org.freedesktop.Notifications
// with the key and the path in its body (watched with dbus-monitor). The
// test runs itself again inside dbus-run-session, so the bus, and beeep's
// connection to it, are its own.
func TestDesktopNotification(t *testing.T) {
	if dir := os.Getenv("SAFE_AGENT_NOTIFY_CHILD"); dir != "" {
		notificationChild(t, dir)
		return
	}
	dir := inSessionBus(t, "TestDesktopNotification")
	monitor, err := os.ReadFile(filepath.Join(dir, "monitor.log"))
	if err != nil {
		t.Fatal(err)
	}
	call := notifyCall(string(monitor))
	if call == "" {
		t.Fatalf("no Notify call on the bus:\n%s", monitor)
	}
	t.Logf("Notify call seen by dbus-monitor:\n%s", call)
	p := samplePrompt()
	title, body := Notice(p, false, "the prompt went unanswered")
	for _, want := range []string{
		`string "safe-agent"`, // app name
		`string "` + title + `"`,
		`"deploy key (work laptop)"`,
		p.KeyFingerprint,
		"Path: here → jump.example.com (forwarded) → bastion.internal (forwarded) → db-primary.eu-west.internal.example.com",
		body,
	} {
		if !strings.Contains(call, want) {
			t.Errorf("Notify call lacks %q:\n%s", want, call)
		}
	}
}

// inSessionBus runs the test named name again in a child process under a
// private session bus (dbus-run-session), with SAFE_AGENT_NOTIFY_CHILD set
// to a fresh directory (also its HOME and XDG_RUNTIME_DIR), so that the
// bus, beeep's connection to it and dunst are the test's own. It fails
// unless the child passes, and returns the directory.
func inSessionBus(t *testing.T, name string) string {
	t.Helper()
	runSession := needProgram(t, "dbus-run-session", "dbus-daemon")
	needProgram(t, "dbus-monitor", "dbus-bin")
	needProgram(t, "dbus-send", "dbus-bin")
	needProgram(t, "dunst", "dunst")
	needProgram(t, "Xvfb", "xvfb")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, runSession, "--", os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SAFE_AGENT_NOTIFY_CHILD="+dir, "XDG_RUNTIME_DIR="+dir, "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s under dbus-run-session: %v\n%s", name, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child test did not pass:\n%s", out)
	}
	t.Logf("child:\n%s", out)
	return dir
}

// notifyCall cuts the first Notify method call out of dbus-monitor's log.
func notifyCall(log string) string {
	i := strings.Index(log, "member=Notify\n")
	if i < 0 {
		return ""
	}
	rest := log[i:]
	// The next message starts at a line beginning with a message type.
	for _, next := range []string{"\nmethod call ", "\nmethod return ", "\nsignal ", "\nerror "} {
		if j := strings.Index(rest, next); j >= 0 {
			rest = rest[:j]
		}
	}
	return rest
}

func notificationChild(t *testing.T, dir string) {
	display := startXvfb(t)
	log, err := os.Create(filepath.Join(dir, "monitor.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	startOn(t, display, "dbus-monitor", log, "interface='org.freedesktop.Notifications'")
	startDunst(t, display)
	var logs strings.Builder
	var mu sync.Mutex
	n, err := NewNotifier(NotifyAlways, slog.New(slog.NewTextHandler(&syncWriter{&logs, &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	title, body := Notice(samplePrompt(), false, "the prompt went unanswered")
	n.Notify(title, body)
	waitFor(t, "the Notify call", func() bool {
		b, _ := os.ReadFile(log.Name())
		return strings.Contains(string(b), "member=Notify\n") && strings.Contains(string(b), "the prompt went unanswered")
	})
	n.Close()
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "not shown") {
		t.Errorf("the notifier reported a failure: %s", logs.String())
	}
}

// startOn starts a program on display for the rest of the test.
func startOn(t *testing.T, display, name string, stdout *os.File, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// startDunst starts dunst on display and waits until it owns
// org.freedesktop.Notifications on the session bus.
func startDunst(t *testing.T, display string) {
	t.Helper()
	startOn(t, display, "dunst", nil)
	waitFor(t, "dunst on the bus", func() bool {
		out, err := exec.Command("dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.Notifications").Output()
		return err == nil && strings.Contains(string(out), "boolean true")
	})
}

type syncWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// processWith returns the command line of a process whose command line
// contains s, or "".
func processWith(s string) string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			return strings.ReplaceAll(string(b), "\x00", " ")
		}
	}
	return ""
}

// hostilePrompt is a refused request whose every field holds markup, line
// breaks or control characters, as a hostile jump host can choose them.
func hostilePrompt() Prompt {
	return Prompt{
		KeyComment:     "<i>work</i>",
		KeyFingerprint: "SHA256:7pP8vXnP0uSHxP1gR1DxK1ABCDefghIJKLmnopqrstu",
		Purpose:        PurposeLogin("<b>root</b>\n\nAllowed path: here → github.com", "prod.internal"),
		Path:           hopsPath("jump & co (forwarded)", "<span foreground='green'>ok</span>"),
		Process:        "ssh (41234) ← </span><big>x\x1b[2K",
	}
}

// A real dunst shows a hostile notice as plain text: the body on the bus
// is escaped for markup, and what dunst renders (its "message", Pango
// markup) reads, once the entities are resolved, exactly as the notice
// safe-agent wrote, line for line, with no tag from a client in it.
func TestDesktopNotificationEscapesMarkup(t *testing.T) {
	if dir := os.Getenv("SAFE_AGENT_NOTIFY_CHILD"); dir != "" {
		markupChild(t, dir)
		return
	}
	needProgram(t, "dunstctl", "dunst")
	dir := inSessionBus(t, "TestDesktopNotificationEscapesMarkup")
	b, err := os.ReadFile(filepath.Join(dir, "history.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hist struct {
		Data [][]map[string]struct {
			Data any `json:"data"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &hist); err != nil {
		t.Fatalf("dunstctl history: %v\n%s", err, b)
	}
	if len(hist.Data) != 1 || len(hist.Data[0]) != 1 {
		t.Fatalf("dunst history holds %v, want one notification:\n%s", hist.Data, b)
	}
	field := func(name string) string { s, _ := hist.Data[0][0][name].Data.(string); return s }
	title, body := Notice(hostilePrompt(), false, "refused: <b>allowed</b> & done")
	if lines := strings.Count(body, "\n") + 1; lines != 5 {
		t.Fatalf("the notice has %d lines, want 5 (Key, To, Path, By, Why):\n%s", lines, body)
	}
	if got := field("appname"); got != "safe-agent" {
		t.Errorf("appname = %q", got)
	}
	if got := field("summary"); got != title {
		t.Errorf("summary = %q, want the title as is: %q", got, title)
	}
	if got, want := field("body"), escapeMarkup(body); got != want {
		t.Errorf("body on the bus:\n%s\n--- want:\n%s", got, want)
	}
	// dunst's default format is "<b>%s</b>\n%b": summary (which it escapes
	// itself), then the body as markup.
	msg := field("message")
	_, shownBody, ok := strings.Cut(msg, "\n")
	if !ok || strings.ContainsAny(shownBody, "<>") {
		t.Fatalf("dunst renders markup from the body: %q", msg)
	}
	if got := html.UnescapeString(shownBody); got != body {
		t.Errorf("dunst shows:\n%s\n--- want:\n%s", got, body)
	}
	t.Logf("dunst message: %q", msg)
}

func markupChild(t *testing.T, dir string) {
	display := startXvfb(t)
	startDunst(t, display)
	n, err := NewNotifier(NotifyAlways, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Notice(hostilePrompt(), false, "refused: <b>allowed</b> & done"))
	n.Close()
	waitFor(t, "dunst to show the notification", func() bool {
		out, err := exec.Command("dunstctl", "count", "displayed").Output()
		return err == nil && strings.TrimSpace(string(out)) == "1"
	})
	shot := filepath.Join(artifactDir(t), "notification-markup.png")
	if out, err := x(t, display, "import", "-window", "root", shot); err != nil {
		t.Errorf("screenshot: %v %s", err, out)
	}
	t.Logf("screenshot: %s", shot)
	if out, err := exec.Command("dunstctl", "close-all").CombinedOutput(); err != nil {
		t.Fatalf("dunstctl close-all: %v %s", err, out)
	}
	var hist []byte
	waitFor(t, "the notification in dunst's history", func() bool {
		hist, err = exec.Command("dunstctl", "history").Output()
		return err == nil && strings.Contains(string(hist), `"safe-agent"`)
	})
	if err := os.WriteFile(filepath.Join(dir, "history.json"), hist, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlogWriter sends a logger's lines to the test log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
