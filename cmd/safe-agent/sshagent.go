package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/keystore"
)

const sshAgentUsage = `usage: safe-agent ssh-agent [-c | -s] [-Dd] [-a bind_address] [-E fingerprint_hash]
                 [-O option] [-P allowed_providers] [-t life]
       safe-agent ssh-agent [-a bind_address] [-E fingerprint_hash] [-O option]
                 [-P allowed_providers] [-t life] command [arg ...]
       safe-agent ssh-agent [-c | -s] -k
`

func newSSHAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh-agent [OPTIONS] [COMMAND [ARG...]]",
		Short: "Drop-in for OpenSSH's ssh-agent command line",
		Long: `Accepts OpenSSH ssh-agent's command line and prints the same output, so
scripts doing eval "$(ssh-agent -s)" work unchanged. A symlink named
ssh-agent pointing at safe-agent behaves the same.

  -a SOCK   bind the agent to SOCK          -c / -s  csh / sh output
  -D        foreground                      -d       foreground, debug log
  -k        kill the agent in SSH_AGENT_PID -t LIFE  default key lifetime
  -E, -P, -O are accepted and ignored (they do not apply).
With COMMAND, the agent runs COMMAND with SSH_AUTH_SOCK and SSH_AGENT_PID
set and exits soon after COMMAND ends.`,
		Example: `  eval "$(safe-agent ssh-agent -s)"
  safe-agent ssh-agent -k
  safe-agent ssh-agent bash -c 'ssh-add ~/.ssh/id_ed25519 && git push'`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "--help" || a == "-h" {
					return cmd.Help()
				}
				if !strings.HasPrefix(a, "-") {
					break
				}
			}
			if code := sshAgentMain(args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				return exitCodeError{code: code}
			}
			return nil
		},
	}
}

type sshAgentOpts struct {
	csh, sh, foreground, debug, kill bool
	socket                           string
	lifetime                         time.Duration
	command                          []string
}

// parseSSHAgentArgs parses getopt-style "cDdksE:a:O:P:t:", stopping at
// the first non-option (the command).
func parseSSHAgentArgs(args []string) (sshAgentOpts, error) {
	var o sshAgentOpts
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch c {
			case 'c':
				o.csh = true
			case 's':
				o.sh = true
			case 'D':
				o.foreground = true
			case 'd':
				o.debug = true
			case 'k':
				o.kill = true
			case 'a', 'E', 'O', 'P', 't':
				val := a[j+1:]
				if val == "" {
					i++
					if i >= len(args) {
						return o, fmt.Errorf("option requires an argument -- %c", c)
					}
					val = args[i]
				}
				switch c {
				case 'a':
					o.socket = val
				case 't':
					d, err := parseOpenSSHTime(val)
					if err != nil {
						return o, fmt.Errorf("Invalid lifetime %q", val)
					}
					o.lifetime = d
				}
				j = len(a)
			default:
				return o, fmt.Errorf("illegal option -- %c", c)
			}
		}
	}
	o.command = args[i:]
	if o.csh && o.sh {
		return o, errors.New("-c and -s are mutually exclusive")
	}
	if o.foreground && o.debug {
		return o, errors.New("-D and -d are mutually exclusive")
	}
	if len(o.command) > 0 && (o.csh || o.sh || o.kill || o.foreground || o.debug) {
		return o, errors.New("a command cannot be combined with -c, -s, -k, -D or -d")
	}
	return o, nil
}

// parseOpenSSHTime reads OpenSSH time formats: "90", "90s", "10m",
// "1h30m", "2d", "1w".
func parseOpenSSHTime(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	var total time.Duration
	num := ""
	for _, r := range s {
		if r >= '0' && r <= '9' {
			num += string(r)
			continue
		}
		if num == "" {
			return 0, errors.New("bad time")
		}
		n, _ := strconv.Atoi(num)
		var unit time.Duration
		switch r {
		case 's', 'S':
			unit = time.Second
		case 'm', 'M':
			unit = time.Minute
		case 'h', 'H':
			unit = time.Hour
		case 'd', 'D':
			unit = 24 * time.Hour
		case 'w', 'W':
			unit = 7 * 24 * time.Hour
		default:
			return 0, errors.New("bad unit")
		}
		total += time.Duration(n) * unit
		num = ""
	}
	if num != "" {
		n, err := strconv.Atoi(num)
		if err != nil {
			return 0, err
		}
		total += time.Duration(n) * time.Second
	}
	if total <= 0 {
		return 0, errors.New("not positive")
	}
	return total, nil
}

func useCsh(o sshAgentOpts) bool {
	if o.csh {
		return true
	}
	if o.sh {
		return false
	}
	return strings.HasSuffix(os.Getenv("SHELL"), "csh")
}

// sshAgentMain is the ssh-agent drop-in; it returns the exit status.
func sshAgentMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseSSHAgentArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "ssh-agent: %v\n%s", err, sshAgentUsage)
		return 1
	}
	csh := useCsh(o)
	if o.kill {
		return sshAgentKill(csh, stdout, stderr)
	}
	madeDir := o.socket == ""
	if madeDir {
		dir, err := os.MkdirTemp("", "ssh-")
		if err != nil {
			fmt.Fprintf(stderr, "ssh-agent: create socket directory: %v\n", err)
			return 1
		}
		o.socket = filepath.Join(dir, fmt.Sprintf("agent.%d", os.Getppid()))
	} else if abs, err := filepath.Abs(o.socket); err == nil {
		o.socket = abs
	}
	cfg := serveConfig{socket: o.socket, keystore: keystore.NameNone, lifetime: o.lifetime, debug: o.debug, auditFallback: true, removeSocketDir: madeDir}
	// cleanup removes the directory made above when no agent is left to
	// (it is empty then; os.Remove leaves a directory that is not).
	cleanup := func() {
		if madeDir {
			_ = os.Remove(filepath.Dir(o.socket))
		}
	}
	if o.foreground || o.debug {
		printer := func(w io.Writer, socket string, pid int) { printAgentVars(w, csh, socket, pid) }
		defer cleanup()
		if err := runServe(context.Background(), cfg, stdout, stderr, printer); err != nil {
			printError(stderr, "ssh-agent", err)
			return 1
		}
		return 0
	}
	watch := 0
	if len(o.command) > 0 {
		watch = os.Getpid()
	}
	pid, err := startDetachedAgent(cfg, watch)
	if err != nil {
		cleanup()
		printError(stderr, "ssh-agent", err)
		return 1
	}
	if len(o.command) == 0 {
		printAgentVars(stdout, csh, o.socket, pid)
		return 0
	}
	// COMMAND form: become the command with the variables set; the agent
	// watches our pid and exits soon after the command ends.
	path, err := exec.LookPath(o.command[0])
	if err != nil {
		fmt.Fprintf(stderr, "ssh-agent: %s: %v\n", o.command[0], err)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		return 1
	}
	env := append(os.Environ(), "SSH_AUTH_SOCK="+o.socket, "SSH_AGENT_PID="+strconv.Itoa(pid))
	err = syscall.Exec(path, o.command, env)
	fmt.Fprintf(stderr, "ssh-agent: exec %s: %v\n", o.command[0], err)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	return 1
}

func printAgentVars(w io.Writer, csh bool, socket string, pid int) {
	if csh {
		fmt.Fprintf(w, "setenv SSH_AUTH_SOCK %s;\nsetenv SSH_AGENT_PID %d;\necho Agent pid %d;\n", shellQuote(socket), pid, pid)
		return
	}
	fmt.Fprintf(w, "SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\nSSH_AGENT_PID=%d; export SSH_AGENT_PID;\necho Agent pid %d;\n", shellQuote(socket), pid, pid)
}

func sshAgentKill(csh bool, stdout, stderr io.Writer) int {
	s := os.Getenv("SSH_AGENT_PID")
	if s == "" {
		fmt.Fprintln(stderr, "SSH_AGENT_PID not set, cannot kill agent")
		return 1
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid < 2 {
		fmt.Fprintf(stderr, "SSH_AGENT_PID=%q, which is not a good PID\n", s)
		return 1
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		fmt.Fprintf(stderr, "kill: %v\n", err)
		return 1
	}
	if csh {
		fmt.Fprintf(stdout, "unsetenv SSH_AUTH_SOCK;\nunsetenv SSH_AGENT_PID;\necho Agent pid %d killed;\n", pid)
	} else {
		fmt.Fprintf(stdout, "unset SSH_AUTH_SOCK;\nunset SSH_AGENT_PID;\necho Agent pid %d killed;\n", pid)
	}
	return 0
}

// startDetachedAgent starts `safe-agent serve` in its own session with
// stdio on /dev/null and waits until its socket is ready (or it failed).
func startDetachedAgent(cfg serveConfig, watchPID int) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	args := []string{"serve", "--socket", cfg.socket, "--keystore", cfg.keystore, "--ready-fd", "3", "--audit-fallback"}
	if cfg.lifetime > 0 {
		args = append(args, "--lifetime", cfg.lifetime.String())
	}
	if watchPID > 0 {
		args = append(args, "--watch-pid", strconv.Itoa(watchPID))
	}
	if cfg.removeSocketDir {
		args = append(args, "--remove-socket-dir")
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return 0, err
	}
	defer devnull.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("start agent: %w", err)
	}
	w.Close()
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	br := bufio.NewReader(r)
	line, _ := br.ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "ready" {
		if line == "" {
			line = "agent exited before it was ready"
		}
		return 0, readyError(line, br)
	}
	return pid, nil
}

// removeSocketDir removes the directory of socket once the agent has
// stopped and its socket is gone, as OpenSSH's agent removes the
// /tmp/ssh-XXXXXX it made. Only an empty directory is removed.
func removeSocketDir(socket string, logger *slog.Logger) {
	dir := filepath.Dir(socket)
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logger.Warn("could not remove the socket directory", "dir", dir, "err", err)
	}
}

// readyError is the error a detached agent reported on its ready pipe:
// "error: MESSAGE", then "hint: HINT" when the error carries one.
func readyError(line string, rest *bufio.Reader) error {
	err := errors.New(strings.TrimPrefix(line, "error: "))
	for {
		l, rerr := rest.ReadString('\n')
		if h, ok := strings.CutPrefix(strings.TrimSpace(l), "hint: "); ok {
			err = hint.Wrap(err, h) // in order: the first is innermost
		}
		if rerr != nil {
			return err
		}
	}
}
