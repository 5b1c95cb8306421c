package test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const gnomeAskpass = "/usr/lib/openssh/gnome-ssh-askpass"

// artifactDir is where screenshots go: $SAFE_AGENT_ARTIFACTS, else
// test/artifacts (ignored by git).
func artifactDir(t *testing.T) string {
	d := os.Getenv("SAFE_AGENT_ARTIFACTS")
	if d == "" {
		d, _ = filepath.Abs("artifacts")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// startXvfb runs a virtual X display and returns its DISPLAY value. Xvfb
// picks a free display itself (-displayfd), so parallel tests never share
// one; -noreset keeps the server from resetting when its last client
// leaves (a client connecting during a reset gets "cannot open display").
func startXvfb(t *testing.T) string {
	xvfb := need(t, "Xvfb", "xvfb")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(xvfb, "-displayfd", "3", "-noreset", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case n := <-line:
		if n == "" {
			t.Fatalf("Xvfb failed: %s", stderr.String())
		}
		return ":" + n
	case <-time.After(20 * time.Second):
		t.Fatalf("Xvfb did not report a display: %s", stderr.String())
	}
	return ""
}

// waitWindow waits for a visible window of class cls and returns its id.
func waitWindow(t *testing.T, display, cls string) string {
	// A first GTK start on a loaded machine can take many seconds.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cmd := exec.Command("xdotool", "search", "--onlyvisible", "--class", cls)
		cmd.Env = append(os.Environ(), "DISPLAY="+display)
		out, _ := cmd.Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			return ids[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s window appeared", cls)
	return ""
}

func xrun(t *testing.T, display string, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v %s", name, args, err, out)
	}
}

// A real gnome-ssh-askpass window, opened by a forwarded login through
// real sshd hosts, answered with xdotool: accept once, refuse once.
func TestRealPromptWindow(t *testing.T) {
	need(t, gnomeAskpass, "ssh-askpass-gnome")
	need(t, "xdotool", "xdotool")
	need(t, "import", "imagemagick")
	display := startXvfb(t)
	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{
		policy: n.policy(fmt.Sprintf("prompt = %q\nconfirm_timeout = \"90s\"\n[defaults]\nconfirm = \"forwarded\"\n", gnomeAskpass)),
		env:    []string{"DISPLAY=" + display},
	})
	k := newKey(t, t.TempDir(), "laptop-key", "ed25519", 0)
	n.authorize(k + ".pub")
	a.mustRun("ssh-add", k)
	os.Remove(k)
	dir := artifactDir(t)
	for _, tc := range []struct {
		key    string
		wantOK bool
		shot   string
	}{
		{"Return", true, "prompt-window-accept.png"},
		{"Escape", false, "prompt-window-refuse.png"},
	} {
		var out string
		var code int
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, code = n.ssh(a, "-A", "jump", n.sshCmd("target", "echo", "reached-target"))
		}()
		win := waitWindow(t, display, "gnome-ssh-askpass")
		time.Sleep(500 * time.Millisecond) // let it draw
		shot := filepath.Join(dir, tc.shot)
		xrun(t, display, "import", "-window", "root", shot)
		t.Logf("screenshot of the prompt: %s", shot)
		_ = win
		xrun(t, display, "xdotool", "key", tc.key)
		wg.Wait()
		ok := code == 0 && strings.Contains(out, "reached-target")
		if ok != tc.wantOK {
			t.Errorf("answered with %s: login ok=%v, want %v\n%s", tc.key, ok, tc.wantOK, out)
		}
	}
	var outcomes []string
	for _, r := range readAudit(t, a.Audit) {
		if r.Event == "sign" && r.Prompt != nil {
			outcomes = append(outcomes, r.Prompt.Outcome)
		}
	}
	if strings.Join(outcomes, ",") != "yes,no" {
		t.Errorf("audit prompt outcomes %v, want yes,no", outcomes)
	}
}

// A refused request produces a desktop notification on the session bus
// (dunst as the notification daemon, observed with dbus-monitor).
func TestRefusalNotification(t *testing.T) {
	need(t, "dbus-run-session", "dbus")
	need(t, "dunst", "dunst")
	need(t, "dbus-monitor", "dbus")
	display := startXvfb(t)
	dir := shortTempDir(t)
	addrFile := filepath.Join(dir, "bus")
	bus := exec.Command("dbus-run-session", "--", "sh", "-c", `echo "$DBUS_SESSION_BUS_ADDRESS" > `+addrFile+`; exec sleep 600`)
	bus.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-bus.Process.Pid, syscall.SIGKILL); bus.Wait() })
	var addr string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(addrFile)
		if addr = strings.TrimSpace(string(b)); addr != "" {
			break
		}
	}
	if addr == "" {
		t.Fatal("dbus-run-session did not start")
	}
	env := append(os.Environ(), "DISPLAY="+display, "DBUS_SESSION_BUS_ADDRESS="+addr)
	dunst := exec.Command("dunst")
	dunst.Env = env
	dunst.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := dunst.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dunst.Process.Kill(); dunst.Wait() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := exec.CommandContext(ctx, "dbus-monitor", "--session", "interface='org.freedesktop.Notifications'")
	mon.Env = env
	stdout, _ := mon.StdoutPipe()
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			seen.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond) // monitor subscribed

	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{
		policy: n.policy("[defaults]\nconfirm = \"never\"\n[[key]]\nmatch = \"notify-key\"\nallow = [\"jump\"]\n"),
		env:    []string{"DISPLAY=" + display, "DBUS_SESSION_BUS_ADDRESS=" + addr},
	})
	k := newKey(t, t.TempDir(), "notify-key", "ed25519", 0)
	n.authorize(k + ".pub")
	a.mustRun("ssh-add", k)
	if out, code := n.ssh(a, "target", "true"); code == 0 {
		t.Fatalf("login to target allowed: %s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		s := seen.String()
		mu.Unlock()
		if strings.Contains(s, "member=Notify") && strings.Contains(s, "safe-agent refused key") {
			for _, want := range []string{`notify-key`, "here → target", "log in as"} {
				if !strings.Contains(s, want) {
					t.Errorf("notification lacks %q:\n%s", want, s)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Notify call seen on the bus:\n%s\nagent log:\n%s", s, a.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
