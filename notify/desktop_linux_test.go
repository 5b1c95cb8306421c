//go:build linux

package notify

import (
	"bufio"
	"context"
	"fmt"
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
	cmd := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
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
		Path:           []string{"here", "jump.example.com (forwarded)", "bastion.internal (forwarded)", "db-primary.eu-west.internal.example.com"},
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
			c, err := NewConfirmer(tt.kind, env, slog.New(slog.DiscardHandler))
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
			waitWithin(t, 60*time.Second, "the prompt window", func() bool {
				out, err := x(t, display, "xdotool", "search", "--onlyvisible", "--pid", fmt.Sprint(pid))
				return err == nil && out != ""
			})
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
	runSession := needProgram(t, "dbus-run-session", "dbus-daemon")
	needProgram(t, "dbus-monitor", "dbus-bin")
	needProgram(t, "dbus-send", "dbus-bin")
	needProgram(t, "dunst", "dunst")
	needProgram(t, "Xvfb", "xvfb")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, runSession, "--", os.Args[0], "-test.run=^TestDesktopNotification$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SAFE_AGENT_NOTIFY_CHILD="+dir, "XDG_RUNTIME_DIR="+dir, "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("notification test under dbus-run-session: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestDesktopNotification") {
		t.Fatalf("child test did not pass:\n%s", out)
	}
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
	start := func(name string, stdout *os.File, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		cmd.Stdout = stdout
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	log, err := os.Create(filepath.Join(dir, "monitor.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	start("dbus-monitor", log, "interface='org.freedesktop.Notifications'")
	start("dunst", nil)
	waitFor(t, "dunst on the bus", func() bool {
		out, err := exec.Command("dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.Notifications").Output()
		return err == nil && strings.Contains(string(out), "boolean true")
	})
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
