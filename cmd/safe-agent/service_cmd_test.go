package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// fakeInit records the commands the service code runs and answers them.
type fakeInit struct {
	calls []string
	fail  map[string]string // command line prefix → output of a failure
}

func (f *fakeInit) run(name string, args ...string) (string, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.calls = append(f.calls, line)
	for prefix, out := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return out, errors.New("exit status 1")
		}
	}
	return "", nil
}

func testDeps(t *testing.T, f *fakeInit, haveSystemctl bool) serviceDeps {
	home := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "cfg"), "SHELL": "/usr/bin/zsh", "XDG_RUNTIME_DIR": filepath.Join(home, "run")}
	t.Setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"]) // agent.DefaultSocketPath: nothing answers there
	return serviceDeps{
		exe: "/opt/safe agent/bin/safe-agent", getenv: func(k string) string { return env[k] }, home: home, uid: 1000,
		run: f.run,
		look: func(name string) (string, error) {
			if haveSystemctl || name != "systemctl" {
				return "/usr/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		},
		memlockMax: ^uint64(0),
	}
}

func TestSystemdQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/usr/local/bin/safe-agent", "/usr/local/bin/safe-agent"},
		{"/home/me/go/bin/safe-agent", "/home/me/go/bin/safe-agent"},
		{"/opt/safe agent/safe-agent", `"/opt/safe agent/safe-agent"`},
		{"/opt/100%/safe-agent", "/opt/100%%/safe-agent"},
		{"/opt/$HOME/safe-agent", "/opt/$$HOME/safe-agent"},
		{`/opt/a"b\c d/x`, `"/opt/a\"b\\c d/x"`},
	} {
		if got := systemdQuote(tc.in); got != tc.want {
			t.Errorf("systemdQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMemlockSetting(t *testing.T) {
	for _, tc := range []struct {
		max  uint64
		want string
	}{
		{^uint64(0), "8M"}, {8 << 20, "8M"}, {64 << 20, "8M"}, {65536, "65536"}, {0, "0"},
	} {
		if got := memlockSetting(tc.max); got != tc.want {
			t.Errorf("memlockSetting(%d) = %q, want %q", tc.max, got, tc.want)
		}
	}
}

func TestSystemdFiles(t *testing.T) {
	f := &fakeInit{}
	d := testDeps(t, f, true)
	files, err := systemdService{d}.files()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.getenv("XDG_CONFIG_HOME"), "systemd", "user")
	if len(files) != 2 || files[0].Path != filepath.Join(dir, "safe-agent.socket") || files[1].Path != filepath.Join(dir, "safe-agent.service") {
		t.Fatalf("files: %+v", files)
	}
	sock, svc := string(files[0].Content), string(files[1].Content)
	for _, want := range []string{"\nListenStream=%t/safe-agent/agent.sock\n", "\nSocketMode=0600\n", "\nDirectoryMode=0700\n", "\nWantedBy=sockets.target\n"} {
		if !strings.Contains(sock, want) {
			t.Errorf("socket unit lacks %q:\n%s", want, sock)
		}
	}
	for _, want := range []string{"\nExecStart=\"/opt/safe agent/bin/safe-agent\" serve\n", "\nLimitMEMLOCK=8M\n", "\nRestart=on-failure\n", "\nNoNewPrivileges=yes\n", "\nRequires=safe-agent.socket\n"} {
		if !strings.Contains(svc, want) {
			t.Errorf("service unit lacks %q:\n%s", want, svc)
		}
	}
	if strings.Contains(svc, "{{") || strings.Contains(sock, "{{") {
		t.Error("unexpanded template")
	}
	// Without XDG_CONFIG_HOME: ~/.config.
	d.getenv = func(string) string { return "" }
	files, _ = systemdService{d}.files()
	if want := filepath.Join(d.home, ".config", "systemd", "user", "safe-agent.socket"); files[0].Path != want {
		t.Errorf("default unit dir: %s, want %s", files[0].Path, want)
	}
}

func TestLaunchdPlist(t *testing.T) {
	f := &fakeInit{}
	d := testDeps(t, f, true)
	d.exe = "/Users/me/bin/safe<agent>&"
	files, err := launchdService{d}.files()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(d.home, "Library", "LaunchAgents", "com.github.safe-agent.plist"); files[0].Path != want {
		t.Errorf("plist path %s, want %s", files[0].Path, want)
	}
	// It is well-formed XML, and the program arguments come back exactly.
	dec := xml.NewDecoder(bytes.NewReader(files[0].Content))
	var strs []string
	inString := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			inString = tk.Name.Local == "string"
		case xml.CharData:
			if inString {
				strs = append(strs, string(tk))
			}
		case xml.EndElement:
			inString = false
		}
	}
	joined := strings.Join(strs, "|")
	if want := "com.github.safe-agent|/Users/me/bin/safe<agent>&|serve|--socket|" + filepath.Join(d.getenv("XDG_RUNTIME_DIR"), "safe-agent", "agent.sock"); !strings.HasPrefix(joined, want) {
		t.Errorf("plist strings %q, want prefix %q", joined, want)
	}
}

func TestServiceInstallEnable(t *testing.T) {
	for _, tc := range []struct {
		name          string
		haveSystemctl bool
		noEnable      bool
		fail          map[string]string
		wantCalls     []string
		wantOut       []string
		wantErr       string
	}{
		{
			name: "enabled", haveSystemctl: true,
			fail:      map[string]string{"systemctl --user is-active": ""},
			wantCalls: []string{"systemctl --user daemon-reload", "systemctl --user is-active --quiet safe-agent.socket", "systemctl --user enable --now safe-agent.socket", "systemctl --user is-active --quiet safe-agent.service"},
			wantOut:   []string{"Enabled and started safe-agent.socket"},
		},
		{
			name: "no user systemd", haveSystemctl: true,
			fail:      map[string]string{"systemctl --user daemon-reload": "Failed to connect to bus: No medium found\n"},
			wantCalls: []string{"systemctl --user daemon-reload"},
			wantOut:   []string{"Enabling skipped: no user systemd to talk to (systemctl --user: Failed to connect to bus: No medium found)", "systemctl --user daemon-reload && systemctl --user enable --now safe-agent.socket"},
		},
		{
			name: "no systemctl", haveSystemctl: false,
			wantOut: []string{"Enabling skipped: no user systemd to talk to (systemctl is not installed)"},
		},
		{
			name: "--no-enable", haveSystemctl: true, noEnable: true,
			wantOut: []string{"Not enabled (--no-enable). To start it now and at every login, run:\n  systemctl --user daemon-reload && systemctl --user enable --now safe-agent.socket"},
		},
		{
			name: "enable fails", haveSystemctl: true,
			fail:      map[string]string{"systemctl --user is-active": "", "systemctl --user enable": "Failed to enable unit: Unit file safe-agent.socket does not exist.\n"},
			wantCalls: []string{"systemctl --user daemon-reload", "systemctl --user is-active --quiet safe-agent.socket", "systemctl --user enable --now safe-agent.socket"},
			wantErr:   "Unit file safe-agent.socket does not exist.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeInit{fail: tc.fail}
			d := testDeps(t, f, tc.haveSystemctl)
			m := systemdService{d}
			var out bytes.Buffer
			err := runServiceInstall(m, d, tc.noEnable, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("install: %v\n%s", err, out.String())
			}
			if strings.Join(f.calls, "\n") != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("commands run:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(tc.wantCalls, "\n"))
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			files, _ := m.files()
			for _, uf := range files {
				got, err := os.ReadFile(uf.Path)
				if err != nil || !bytes.Equal(got, uf.Content) {
					t.Errorf("%s not written as rendered: %v", uf.Path, err)
				}
			}
			if tc.wantErr == "" && !strings.Contains(out.String(), "Add this line to ~/.zshrc so that every new shell uses the agent:\n  eval \"$(") {
				t.Errorf("no profile line for zsh:\n%s", out.String())
			}
		})
	}
}

func TestServiceUninstallAndStatus(t *testing.T) {
	f := &fakeInit{}
	d := testDeps(t, f, true)
	m := systemdService{d}
	var out bytes.Buffer
	if err := runServiceStatus(m, &out); err == nil || !strings.Contains(err.Error(), "not installed: run `safe-agent service install`") {
		t.Errorf("status before install: %v", err)
	}
	if err := runServiceInstall(m, d, true, &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runServiceStatus(m, &out); err != nil || strings.Count(out.String(), "installed, up to date") != 2 {
		t.Errorf("status after install: %v\n%s", err, out.String())
	}
	// A unit written for another binary is reported as out of date.
	files, _ := m.files()
	os.WriteFile(files[1].Path, []byte("[Service]\nExecStart=/old/safe-agent serve\n"), 0o644)
	out.Reset()
	if err := runServiceStatus(m, &out); err != nil || !strings.Contains(out.String(), "safe-agent.service: installed, but differs from what this binary writes") {
		t.Errorf("status with an old unit: %v\n%s", err, out.String())
	}
	f.calls = nil
	out.Reset()
	if err := runServiceUninstall(m, &out); err != nil {
		t.Fatal(err)
	}
	want := "systemctl --user daemon-reload\nsystemctl --user disable --now safe-agent.socket safe-agent.service\nsystemctl --user daemon-reload"
	if got := strings.Join(f.calls, "\n"); got != want {
		t.Errorf("uninstall ran:\n%s\nwant:\n%s", got, want)
	}
	for _, uf := range files {
		if _, err := os.Stat(uf.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after uninstall", uf.Path)
		}
	}
	out.Reset()
	if err := runServiceUninstall(m, &out); err != nil || !strings.Contains(out.String(), "not installed; nothing to remove") {
		t.Errorf("second uninstall: %v %q", err, out.String())
	}
}

// Every command a person can run has --help with an example.
func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == cobra.ShellCompRequestCmd || c.Name() == cobra.ShellCompNoDescRequestCmd {
			return
		}
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
	if n < 20 {
		t.Errorf("walked only %d commands", n)
	}
	// The examples show in --help.
	for _, args := range [][]string{{"env", "--help"}, {"doctor", "--help"}, {"status", "--help"}, {"service", "install", "--help"}, {"completion", "fish", "--help"}} {
		out, _, code := runAuditCLI(t, t.Context(), args...)
		if code != 0 || !strings.Contains(out, "Examples:\n  ") {
			t.Errorf("%v: exit %d, no Examples section:\n%s", args, code, out)
		}
	}
}

// renderUnit fills every placeholder or fails naming the one it cannot
// fill: a unit file with a literal {{.X}} left in would not start.
func TestRenderUnitPlaceholders(t *testing.T) {
	b, err := renderUnit("safe-agent.service", map[string]string{"ExecStart": "/opt/sa/safe-agent", "MemLock": "8M"})
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.Contains(text, "\nExecStart=/opt/sa/safe-agent serve\n") || !strings.Contains(text, "\nLimitMEMLOCK=8M\n") || strings.Contains(text, "{{") {
		t.Errorf("rendered unit:\n%s", text)
	}
	_, err = renderUnit("safe-agent.service", map[string]string{"ExecStart": "/x"})
	if err == nil || err.Error() != "unit template safe-agent.service: no value for {{.MemLock}}" {
		t.Errorf("missing value: %v", err)
	}
}
