package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvEvaluatedByEachShell: the output of `safe-agent env` for bash,
// zsh, fish and csh, evaluated by that very shell, sets SSH_AUTH_SOCK so
// that ssh-add reaches the agent: on the default socket (the one the
// systemd unit uses) with the shell detected from $SHELL, and on a socket
// whose path needs quoting (a space and a quote).
func TestEnvEvaluatedByEachShell(t *testing.T) {
	need(t, "ssh-add", "openssh-client")
	shells := map[string]string{}
	for _, s := range []struct{ name, pkg string }{{"bash", "bash"}, {"zsh", "zsh"}, {"fish", "fish"}, {"csh", "csh"}} {
		shells[s.name] = need(t, s.name, s.pkg)
	}
	run := shortTempDir(t) // XDG_RUNTIME_DIR: the default socket is run/safe-agent/agent.sock
	def := startAgent(t, agentOpts{socket: filepath.Join(run, "safe-agent", "agent.sock")})
	odd := startAgent(t, agentOpts{})
	// The same socket through a directory whose name needs quoting.
	oddDir := filepath.Join(shortTempDir(t), "it's here")
	if err := os.Symlink(filepath.Dir(odd.Socket), oddDir); err != nil {
		t.Fatal(err)
	}
	oddSocket := filepath.Join(oddDir, "agent.sock")
	keys := t.TempDir()
	def.mustRun("ssh-add", newKey(t, keys, "default-socket-key", "ed25519", 0))
	odd.mustRun("ssh-add", newKey(t, keys, "odd-socket-key", "ed25519", 0))

	// How each shell evaluates the output; SA is the command to run.
	scripts := map[string]string{
		"bash": `eval "$($SA)"; ssh-add -l`,
		"zsh":  `eval "$($SA)"; ssh-add -l`,
		"fish": `$SA | source; ssh-add -l`,
		"csh":  "eval \"`$SA`\"; ssh-add -l",
	}
	for _, name := range []string{"bash", "zsh", "fish", "csh"} {
		for _, tc := range []struct {
			what    string
			args    string
			wantKey string
			wrong   string
		}{
			{"default socket, shell from SHELL", "", "default-socket-key", "odd-socket-key"},
			{"quoted socket path, --shell", " --shell " + name + " --socket " + shQuote(oddSocket), "odd-socket-key", "default-socket-key"},
		} {
			t.Run(name+"/"+tc.what, func(t *testing.T) {
				home := t.TempDir()
				// SA runs `safe-agent env ARGS`: a wrapper, because the
				// shells split (or do not split) $SA differently.
				w := filepath.Join(home, "sa-env")
				os.WriteFile(w, []byte("#!/bin/sh\nexec "+agentBin()+" env"+tc.args+"\n"), 0o755)
				env := []string{
					"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + run, "LANG=C.UTF-8",
					"SHELL=" + shells[name], "SA=" + w,
				}
				out, code := runEnv(t, env, "", shells[name], "-c", scripts[name])
				if code != 0 || !strings.Contains(out, tc.wantKey) || strings.Contains(out, tc.wrong) {
					printed, _ := runEnv(t, env, "", w)
					t.Errorf("%s evaluating `safe-agent env%s` then ssh-add -l: exit %d\n%s\n(safe-agent env printed: %s)", name, tc.args, code, out, printed)
				}
			})
		}
	}
}

// TestShellCompletion: `safe-agent completion` scripts load in bash, zsh
// and fish and complete commands and fixed flag values.
func TestShellCompletion(t *testing.T) {
	bash := need(t, "bash", "bash")
	// cobra's bash script builds on the bash-completion package, as
	// interactive bash on Debian loads it.
	bashCompletion := need(t, "/usr/share/bash-completion/bash_completion", "bash-completion")
	zsh := need(t, "zsh", "zsh")
	fish := need(t, "fish", "fish")
	home := t.TempDir()
	env := []string{"PATH=" + binDir + ":" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}

	// bash: the completion function fills COMPREPLY as bash would.
	script := `source ` + bashCompletion + `
source <(safe-agent completion bash) || exit 1
complete -p safe-agent || exit 1
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); __start_safe-agent 2>/dev/null; echo "${COMPREPLY[*]}"; }
comp safe-agent doc
comp safe-agent env --shell f
comp safe-agent service un`
	out, code := runEnv(t, env, "", bash, "-c", script)
	if code != 0 || !strings.Contains(out, "\ndoctor\nfish\nuninstall\n") {
		t.Errorf("bash completion: exit %d\n%s", code, out)
	}

	// fish: `complete -C` asks for the completions of a command line.
	out, code = runEnv(t, env, "", fish, "-c", `safe-agent completion fish | source; complete -C "safe-agent sta"; complete -C "safe-agent serve --keystore "`)
	if code != 0 || !strings.Contains(out, "status\t") || !strings.Contains(out, "keyring") || !strings.Contains(out, "none") {
		t.Errorf("fish completion: exit %d\n%s", code, out)
	}

	// zsh: sourcing the script registers _safe-agent for safe-agent
	// (compdef), and _safe-agent offers what the binary completes. compinit
	// is slow, so its compdef, _describe and compadd are stand-ins that
	// print what they are given.
	out, code = runEnv(t, env, "", zsh, "-f", "-c", `compdef() { print "compdef $*" }; _describe() { print -l -- ${(P)2} }; compadd() { print -l -- "$@" }
source <(safe-agent completion zsh) || exit 1
words=(safe-agent doc); CURRENT=2; _safe-agent
words=(safe-agent service un); CURRENT=3; _safe-agent`)
	if code != 0 || !strings.Contains(out, "compdef _safe-agent safe-agent\n") || !strings.Contains(out, "\ndoctor:Check the set-up") || !strings.Contains(out, "\nuninstall:Stop and disable") {
		t.Errorf("zsh completion: exit %d\n%s", code, out)
	}
}
