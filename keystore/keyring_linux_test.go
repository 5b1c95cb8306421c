package keystore

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dbus "github.com/godbus/dbus/v5"
)

// These tests run against a real gnome-keyring on a private session bus:
// the parent test starts dbus-run-session, which runs the test binary again
// (with ssChildEnv set) to run the matching *Child test inside the session.

const ssChildEnv = "KEYSTORE_SECRET_SERVICE_CHILD"

// busConfig is a session bus whose only service directory is serviceDir,
// so nothing is D-Bus-activated behind the test's back (with the system's
// directories, asking for org.freedesktop.secrets would start a keyring).
func busConfig(t *testing.T, dir string, standardServices bool) string {
	t.Helper()
	empty := filepath.Join(dir, "services")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	services := "<servicedir>" + empty + "</servicedir>"
	if standardServices {
		services += "<standard_session_servicedirs/>"
	}
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=` + dir + `</listen>
  <auth>EXTERNAL</auth>
  ` + services + `
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
	p := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type sessionOpts struct {
	keyring          bool   // start an unlocked gnome-keyring-daemon
	display          string // DISPLAY for the session ("" = headless)
	standardServices bool
}

// runInSession runs the test named child inside a fresh session bus and
// fails the calling test with the child's output if it fails.
func runInSession(t *testing.T, child string, o sessionOpts) {
	t.Helper()
	needProgram(t, "dbus-run-session", "dbus")
	if o.keyring {
		needProgram(t, "gnome-keyring-daemon", "gnome-keyring")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	home, data, run := filepath.Join(dir, "home"), filepath.Join(dir, "data"), filepath.Join(dir, "run")
	for _, d := range []string{home, data, run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	script := `exec "$0" -test.run="^$1\$" -test.v -test.count=1`
	if o.keyring {
		script = `echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1; ` + script
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--config-file="+busConfig(t, dir, o.standardServices), "--",
		"sh", "-c", script, self, child)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_DATA_HOME=" + data,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR=" + run,
		ssChildEnv + "=1",
	}
	if o.display != "" {
		cmd.Env = append(cmd.Env, "DISPLAY="+o.display, "NO_AT_BRIDGE=1")
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+child) {
		t.Fatalf("%s in a session bus: %v\n%s", child, err, out)
	}
	t.Logf("%s", out)
}

func inSessionChild(t *testing.T) {
	if os.Getenv(ssChildEnv) != "1" {
		t.Skip("runs inside a session bus started by its parent test")
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Fatal("no DBUS_SESSION_BUS_ADDRESS: refusing to let godbus run dbus-launch")
	}
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func TestSecretService(t *testing.T) {
	runInSession(t, "TestSecretServiceChild", sessionOpts{keyring: true})
}

func TestSecretServiceChild(t *testing.T) {
	inSessionChild(t)
	k := NewKeyring("safe-agent", 10*time.Second, testLog(t))
	testKeyringStore(t, k, goKeyring{}, "safe-agent")

	t.Run("locked", func(t *testing.T) {
		ctx := context.Background()
		sk := storedKeyFor(t, genEd25519, "before lock", Settings{})
		if err := k.Put(ctx, sk); err != nil {
			t.Fatal(err)
		}
		lockLogin(t)
		start := time.Now()
		_, _, err := k.Load(ctx)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), msgLocked) {
			t.Errorf("Load from a locked keyring = %v, want ErrUnavailable with %q", err, msgLocked)
		}
		if d := time.Since(start); d > k.timeout {
			t.Errorf("Load took %s, more than the %s deadline", d, k.timeout)
		}
		err = k.Put(ctx, storedKeyFor(t, genEd25519, "while locked", Settings{}))
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), msgLocked) {
			t.Errorf("Put to a locked keyring = %v", err)
		}
	})
}

// lockLogin locks the login collection (what a screen lock or
// `secret-tool lock` does).
func lockLogin(t *testing.T) {
	t.Helper()
	conn, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	err = conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.Lock", 0, []dbus.ObjectPath{"/org/freedesktop/secrets/collection/login"}).
		Store(&locked, &prompt)
	if err != nil || len(locked) != 1 {
		t.Fatalf("lock the login keyring: %v (locked %v, prompt %v)", err, locked, prompt)
	}
}

func TestNoSecretService(t *testing.T) {
	runInSession(t, "TestNoSecretServiceChild", sessionOpts{})
}

func TestNoSecretServiceChild(t *testing.T) {
	inSessionChild(t)
	k := NewKeyring("safe-agent", 10*time.Second, testLog(t))
	ctx := context.Background()
	_, _, err := k.Load(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), msgNoSecretService) {
		t.Errorf("Load = %v, want ErrUnavailable with %q", err, msgNoSecretService)
	}
	t.Logf("Load: %v", err)
	err = k.Put(ctx, storedKeyFor(t, genEd25519, "x", Settings{}))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), msgNoSecretService) {
		t.Errorf("Put = %v, want ErrUnavailable with %q", err, msgNoSecretService)
	}
}

// TestSecretServiceLockedPrompt: with a display, gnome-keyring answers a
// locked keyring with an unlock dialog and go-keyring waits for it forever.
// Our deadline must end the call, and the next call must not pile up
// behind the stuck one.
func TestSecretServiceLockedPrompt(t *testing.T) {
	xvfb := needProgram(t, "Xvfb", "xvfb")
	if _, err := os.Stat("/usr/libexec/gcr-prompter"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /usr/libexec/gcr-prompter: install the Debian package gcr")
		}
		t.Skip("no /usr/libexec/gcr-prompter: install the Debian package gcr")
	}
	display := startXvfb(t, xvfb)
	runInSession(t, "TestSecretServiceLockedPromptChild", sessionOpts{keyring: true, display: display, standardServices: true})
}

// startXvfb runs a virtual X display that Xvfb picks itself (-displayfd:
// parallel tests never share one) and that does not reset when its last
// client leaves (-noreset: a client connecting during a reset fails).
func startXvfb(t *testing.T, xvfb string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(xvfb, "-displayfd", "3", "-noreset", "-screen", "0", "800x600x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case n := <-line:
		if n == "" {
			t.Fatal("Xvfb did not start")
		}
		return ":" + n
	case <-time.After(20 * time.Second):
		t.Fatal("Xvfb did not report a display")
	}
	return ""
}

func TestSecretServiceLockedPromptChild(t *testing.T) {
	inSessionChild(t)
	k := NewKeyring("safe-agent", 3*time.Second, testLog(t))
	ctx := context.Background()
	if err := k.Put(ctx, storedKeyFor(t, genEd25519, "x", Settings{})); err != nil {
		t.Fatal(err)
	}
	lockLogin(t)
	start := time.Now()
	_, _, err := k.Load(ctx)
	d := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "the keyring did not answer within 3s") {
		t.Errorf("Load from a locked keyring with an unlock prompt = %v", err)
	}
	if d > 4*time.Second {
		t.Errorf("Load took %s, deadline 3s", d)
	}
	_, _, err = k.Load(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "still busy with an earlier request") {
		t.Errorf("second Load while the prompt is up = %v", err)
	}
	t.Logf("second Load: %v", err)
}
