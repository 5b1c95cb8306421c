package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A process started with argv[0] "git" is read by the file it executed:
// name and executable are sleep's, and the pid is re-checked by start
// time, so the same pid with another start time is "process gone".
func TestReadClientIgnoresArgv0(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sleep not found (Debian package coreutils)")
		}
		t.Skip("sleep not found (Debian package coreutils)")
	}
	cmd := exec.Command(sleep, "30")
	cmd.Args[0] = "git"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	p := peerInfo{PID: cmd.Process.Pid}
	readPeer(&p)
	c := p.Client
	if c.Unreadable != "" || len(c.Chain) < 2 {
		t.Fatalf("client = %+v", c)
	}
	real, _ := filepath.EvalSymlinks(sleep)
	if got := c.Chain[0]; got.Name != "sleep" || got.Exe != real || got.PID != cmd.Process.Pid {
		t.Errorf("chain[0] = %+v, want sleep at %s", got, real)
	}
	self, _ := os.Executable()
	if got := c.Chain[1]; got.PID != os.Getpid() || got.Exe != self {
		t.Errorf("chain[1] = %+v, want this test (%d, %s)", got, os.Getpid(), self)
	}
	if why := peerChanged(&p); why != "" {
		t.Errorf("peerChanged on a live process = %q", why)
	}
	reused := p
	reused.start++
	if why := peerChanged(&reused); why != "process gone" {
		t.Errorf("peerChanged with another start time = %q, want \"process gone\"", why)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if why := peerChanged(&p); why != "process gone" {
		t.Errorf("peerChanged after exit = %q, want \"process gone\"", why)
	}
	if c, _ := readClient(cmd.Process.Pid); c.Unreadable != "process gone" {
		t.Errorf("readClient of an exited pid = %+v", c)
	}
}

func TestUnitOf(t *testing.T) {
	for cg, want := range map[string]string{
		"/system.slice/cron.service": "cron.service",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-1.scope": "vte-spawn-1.scope",
		"/user.slice/user-1000.slice/session-2.scope":                                                            "session-2.scope",
		"/safe-agent-test-1": "",
		"/":                  "",
		"":                   "",
	} {
		if got := unitOf(cg); got != want {
			t.Errorf("unitOf(%q) = %q, want %q", cg, got, want)
		}
	}
}
