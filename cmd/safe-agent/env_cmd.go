package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// shellSyntax is how a family of shells sets an environment variable.
type shellSyntax string

const (
	shellSh   shellSyntax = "sh" // bash, zsh, sh, dash, ksh
	shellFish shellSyntax = "fish"
	shellCsh  shellSyntax = "csh" // csh, tcsh
)

// shellNames maps what --shell and $SHELL may name to a syntax.
var shellNames = map[string]shellSyntax{
	"bash": shellSh, "zsh": shellSh, "sh": shellSh, "dash": shellSh, "ksh": shellSh, "mksh": shellSh, "ash": shellSh, "busybox": shellSh,
	"fish": shellFish,
	"csh":  shellCsh, "tcsh": shellCsh,
}

// parseShell resolves --shell (or, when empty, the base name of $SHELL).
// An unknown $SHELL falls back to sh syntax; an unknown --shell is an error.
func parseShell(flag, envShell string) (shellSyntax, error) {
	if flag != "" {
		s, ok := shellNames[strings.ToLower(flag)]
		if !ok {
			return "", fmt.Errorf("--shell %q: use bash, zsh, fish or csh (also sh, ksh, tcsh)", flag)
		}
		return s, nil
	}
	if s, ok := shellNames[filepath.Base(envShell)]; ok {
		return s, nil
	}
	return shellSh, nil
}

// envLines are the commands that point SSH_AUTH_SOCK at socket.
func envLines(sh shellSyntax, socket string) string {
	switch sh {
	case shellFish:
		return fmt.Sprintf("set -gx SSH_AUTH_SOCK %s;\n", fishQuote(socket))
	case shellCsh:
		return fmt.Sprintf("setenv SSH_AUTH_SOCK %s;\n", cshQuote(socket))
	default:
		return fmt.Sprintf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", shellQuote(socket))
	}
}

// fishQuote quotes for fish: inside single quotes only \ and ' are special.
func fishQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@%,") == "" {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// cshQuote quotes for csh: single quotes, with ' written as '\”. (csh
// still expands ! inside quotes in an interactive shell; socket paths do
// not contain one in practice.)
func cshQuote(s string) string { return shellQuote(s) }

// profileLine is the one line that makes every new shell use the agent,
// and the start-up file it belongs in, for the shell named by envShell
// ($SHELL); self is how to run this program.
func profileLine(envShell, self string) (line, file string) {
	sh, _ := parseShell("", envShell)
	switch sh {
	case shellFish:
		return fmt.Sprintf("%s env --shell fish | source", self), "~/.config/fish/config.fish"
	case shellCsh:
		return fmt.Sprintf("eval `%s env --shell csh`", self), "~/.cshrc"
	}
	file = "~/.bashrc (or ~/.profile)"
	if filepath.Base(envShell) == "zsh" {
		file = "~/.zshrc"
	}
	return fmt.Sprintf(`eval "$(%s env)"`, self), file
}

// selfName is how a shell profile should run this program: "safe-agent"
// when that name on PATH is this very binary, else its absolute path.
func selfName() string {
	exe, err := os.Executable()
	if err != nil {
		return "safe-agent"
	}
	if p, err := exec.LookPath("safe-agent"); err == nil {
		a, errA := os.Stat(p)
		b, errB := os.Stat(exe)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return "safe-agent"
		}
	}
	return shellQuote(exe)
}

func newEnvCmd() *cobra.Command {
	var shell, socket string
	cmd := &cobra.Command{
		Use:   "env [--shell bash|zsh|fish|csh] [--socket PATH]",
		Short: "Print the shell commands that point SSH_AUTH_SOCK at safe-agent",
		Long: `Print the commands that set SSH_AUTH_SOCK to the agent's socket, in the
syntax of your shell (from $SHELL, or --shell). Put the line that runs it in
your shell's start-up file so that every new shell uses safe-agent:

  bash, zsh:  eval "$(safe-agent env)"                   ~/.bashrc, ~/.zshrc
  fish:       safe-agent env --shell fish | source      ~/.config/fish/config.fish
  csh, tcsh:  eval ` + "`safe-agent env --shell csh`" + `                ~/.cshrc

The socket is --socket, else the one 'safe-agent serve' and the systemd
socket unit use: $XDG_RUNTIME_DIR/safe-agent/agent.sock (without
XDG_RUNTIME_DIR, a private directory under /tmp). The agent need not be
running: the line only names the socket.`,
		Example: `  eval "$(safe-agent env)"
  safe-agent env --shell fish | source
  eval ` + "`safe-agent env --shell csh`" + `
  safe-agent env --socket ~/.ssh/safe-agent.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEnvCmd(shell, socket, os.Getenv("SHELL"), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&shell, "shell", "", "shell syntax: bash, zsh, fish or csh (default: from $SHELL)")
	cmd.Flags().StringVar(&socket, "socket", "", "socket path (default $XDG_RUNTIME_DIR/safe-agent/agent.sock)")
	_ = cmd.RegisterFlagCompletionFunc("shell", cobra.FixedCompletions([]string{"bash", "zsh", "fish", "csh"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runEnvCmd(shell, socket, envShell string, out io.Writer) error {
	sh, err := parseShell(shell, envShell)
	if err != nil {
		return err
	}
	if socket == "" {
		socket = defaultSocket()
	}
	if !filepath.IsAbs(socket) {
		abs, err := filepath.Abs(socket)
		if err != nil {
			return fmt.Errorf("--socket %s: %w", socket, err)
		}
		socket = abs
	}
	_, err = io.WriteString(out, envLines(sh, socket))
	return err
}
