package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseShell(t *testing.T) {
	for _, tc := range []struct {
		flag, envShell string
		want           shellSyntax
		wantErr        string
	}{
		{"", "/bin/bash", shellSh, ""},
		{"", "/usr/bin/zsh", shellSh, ""},
		{"", "/usr/bin/fish", shellFish, ""},
		{"", "/bin/tcsh", shellCsh, ""},
		{"", "/bin/csh", shellCsh, ""},
		{"", "", shellSh, ""},
		{"", "/opt/weird/xonsh", shellSh, ""},
		{"fish", "/bin/bash", shellFish, ""},
		{"CSH", "", shellCsh, ""},
		{"zsh", "/usr/bin/fish", shellSh, ""},
		{"powershell", "", "", `--shell "powershell": use bash, zsh, fish or csh`},
	} {
		got, err := parseShell(tc.flag, tc.envShell)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseShell(%q, %q) error %v, want %q", tc.flag, tc.envShell, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseShell(%q, %q) = %q, %v; want %q", tc.flag, tc.envShell, got, err, tc.want)
		}
	}
}

func TestEnvLines(t *testing.T) {
	for _, tc := range []struct {
		sh     shellSyntax
		socket string
		want   string
	}{
		{shellSh, "/run/user/1000/safe-agent/agent.sock", "SSH_AUTH_SOCK=/run/user/1000/safe-agent/agent.sock; export SSH_AUTH_SOCK;\n"},
		{shellFish, "/run/user/1000/safe-agent/agent.sock", "set -gx SSH_AUTH_SOCK /run/user/1000/safe-agent/agent.sock;\n"},
		{shellCsh, "/run/user/1000/safe-agent/agent.sock", "setenv SSH_AUTH_SOCK /run/user/1000/safe-agent/agent.sock;\n"},
		{shellSh, "/tmp/o'brien dir/a.sock", `SSH_AUTH_SOCK='/tmp/o'\''brien dir/a.sock'; export SSH_AUTH_SOCK;` + "\n"},
		{shellFish, `/tmp/o'brien dir\x/a.sock`, `set -gx SSH_AUTH_SOCK '/tmp/o\'brien dir\\x/a.sock';` + "\n"},
		{shellCsh, "/tmp/my dir/a.sock", "setenv SSH_AUTH_SOCK '/tmp/my dir/a.sock';\n"},
		{shellSh, "/tmp/$HOME/`x`", "SSH_AUTH_SOCK='/tmp/$HOME/`x`'; export SSH_AUTH_SOCK;\n"},
	} {
		if got := envLines(tc.sh, tc.socket); got != tc.want {
			t.Errorf("envLines(%s, %q) = %q, want %q", tc.sh, tc.socket, got, tc.want)
		}
	}
}

func TestEnvCmdDefaultSocket(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	var b bytes.Buffer
	if err := runEnvCmd("", "", "/usr/bin/fish", &b); err != nil {
		t.Fatal(err)
	}
	if want := "set -gx SSH_AUTH_SOCK /run/user/1000/safe-agent/agent.sock;\n"; b.String() != want {
		t.Errorf("env for fish = %q, want %q", b.String(), want)
	}
	b.Reset()
	if err := runEnvCmd("bash", "rel/agent.sock", "", &b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "SSH_AUTH_SOCK=/") {
		t.Errorf("a relative --socket must be made absolute (shells change directory): %q", b.String())
	}
}

func TestProfileLine(t *testing.T) {
	for _, tc := range []struct{ shell, line, file string }{
		{"/bin/bash", `eval "$(safe-agent env)"`, "~/.bashrc (or ~/.profile)"},
		{"/usr/bin/zsh", `eval "$(safe-agent env)"`, "~/.zshrc"},
		{"/usr/bin/fish", "safe-agent env --shell fish | source", "~/.config/fish/config.fish"},
		{"/bin/tcsh", "eval `safe-agent env --shell csh`", "~/.cshrc"},
	} {
		line, file := profileLine(tc.shell, "safe-agent")
		if line != tc.line || file != tc.file {
			t.Errorf("profileLine(%s) = %q, %q; want %q, %q", tc.shell, line, file, tc.line, tc.file)
		}
	}
}
