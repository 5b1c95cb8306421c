package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// The unit files are part of the binary, so that what `service install`
// writes always matches the program it starts.
//
//go:embed units/safe-agent.socket units/safe-agent.service units/com.github.safe-agent.plist
var unitFS embed.FS

// unitFile is one file `service install` writes.
type unitFile struct {
	Path    string
	Content []byte
}

// serviceDeps is everything the service commands take from the system,
// so that tests can give their own.
type serviceDeps struct {
	exe    string                                            // absolute path of the binary the service runs
	getenv func(string) string                               // os.Getenv
	home   string                                            // the user's home directory
	uid    int                                               // the user's uid
	run    func(name string, args ...string) (string, error) // runs systemctl/launchctl; combined output
	look   func(string) (string, error)                      // exec.LookPath
	// memlockMax is the hard RLIMIT_MEMLOCK in bytes (^uint64(0): unlimited).
	memlockMax uint64
}

// serviceManager is the init system that starts safe-agent at login:
// systemd (Linux) or launchd (macOS).
type serviceManager interface {
	// name is "systemd" or "launchd", for messages.
	name() string
	// files renders what install writes.
	files() ([]unitFile, error)
	// enable makes the written files take effect now and at every login.
	// When the init system cannot be reached it says so on w, with the
	// commands to run later, and returns nil; an error is a real failure.
	enable(w io.Writer) error
	// disable stops and disables the service, as far as possible.
	disable(w io.Writer)
	// forget tells the init system the files are gone (best effort).
	forget()
	// enableHint is the command that enables the service by hand.
	enableHint() string
	// state describes what the init system says about the service.
	state(w io.Writer)
}

func defaultServiceDeps() (serviceDeps, error) {
	exe, err := os.Executable()
	if err != nil {
		return serviceDeps{}, fmt.Errorf("find the safe-agent binary: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return serviceDeps{}, fmt.Errorf("home directory: %w", err)
	}
	return serviceDeps{
		exe: exe, getenv: os.Getenv, home: home, uid: os.Getuid(),
		run: func(name string, args ...string) (string, error) {
			out, err := exec.Command(name, args...).CombinedOutput()
			return string(out), err
		},
		look:       exec.LookPath,
		memlockMax: memlockHardLimit(),
	}, nil
}

// renderUnit fills the {{.Name}} placeholders of an embedded unit file
// with vals; a placeholder without a value is an error. It is plain
// substitution on purpose: text/template makes the linker keep every
// exported method of every type in the binary (2.5 MB of its 10 MB).
func renderUnit(name string, vals map[string]string) ([]byte, error) {
	src, err := unitFS.ReadFile("units/" + name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	rest := string(src)
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			return b.Bytes(), nil
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unit template %s: a {{ without }}", name)
		}
		key := strings.TrimSpace(rest[i+2 : i+j])
		v, ok := vals[strings.TrimPrefix(key, ".")]
		if !ok || !strings.HasPrefix(key, ".") {
			return nil, fmt.Errorf("unit template %s: no value for {{%s}}", name, key)
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[i+j+2:]
	}
}

func newServiceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Start safe-agent at login (systemd user units, or launchd on macOS)",
		Long: `Install, remove or inspect the service that starts safe-agent at login.

On Linux, install writes two systemd user units to
$XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user): safe-agent.socket,
which creates $XDG_RUNTIME_DIR/safe-agent/agent.sock at login, and
safe-agent.service, which systemd starts on the first connection with the
socket already listening (socket activation). It then runs
  systemctl --user daemon-reload
  systemctl --user enable --now safe-agent.socket
On macOS it writes a launchd agent, ~/Library/LaunchAgents/com.github.safe-agent.plist,
and loads it with launchctl.

The unit files are built into the binary: 'service install --print' shows
them without writing anything. The agent runs the same with
'safe-agent serve' started by hand.`,
		Example: `  safe-agent service install
  safe-agent service install --print
  safe-agent service status
  safe-agent service uninstall`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newServiceInstallCmd(), newServiceUninstallCmd(), newServiceStatusCmd())
	return cmd
}

func newServiceInstallCmd() *cobra.Command {
	var noEnable, print bool
	cmd := &cobra.Command{
		Use:   "install [--no-enable] [--print]",
		Short: "Write the service files and enable them, so the agent runs at every login",
		Long: `Write the service files for this binary and enable them: with systemd,
the socket is created at once and at every login, and the agent starts on
the first connection. Then print the line to add to your shell's start-up
file.

Without a reachable user systemd (no login session, a container, a test),
the files are written, enabling is skipped with a note saying how to do it
later, and the exit status is 0. --no-enable skips it on purpose.
Running install again updates the files (for example after moving the
binary).`,
		Example: `  safe-agent service install
  safe-agent service install --no-enable
  safe-agent service install --print`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			deps, err := defaultServiceDeps()
			if err != nil {
				return err
			}
			m, err := platformService(deps)
			if err != nil {
				return err
			}
			if print {
				return printServiceFiles(m, cmd.OutOrStdout())
			}
			return runServiceInstall(m, deps, noEnable, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&noEnable, "no-enable", false, "only write the files; do not enable or start anything")
	cmd.Flags().BoolVar(&print, "print", false, "print the files that would be written, and write nothing")
	return cmd
}

func newServiceUninstallCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and disable the service and remove its files",
		Long: `Stop and disable the service (when the init system can be reached) and
remove the files 'service install' wrote. Keys stored in the keyring, the
policy file and the audit log are left alone.`,
		Example: `  safe-agent service uninstall`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := currentService()
			if err != nil {
				return err
			}
			return runServiceUninstall(m, cmd.OutOrStdout())
		},
	}
}

func newServiceStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether the service is installed, up to date, enabled and answering",
		Long: `Say whether the service files are installed and match this binary, what
the init system says about them, and whether an agent answers on the
service's socket. Exits 1 when the service is not installed.`,
		Example: `  safe-agent service status`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := currentService()
			if err != nil {
				return err
			}
			return runServiceStatus(m, cmd.OutOrStdout())
		},
	}
}

func printServiceFiles(m serviceManager, w io.Writer) error {
	files, err := m.files()
	if err != nil {
		return err
	}
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "# %s\n", f.Path)
		w.Write(f.Content)
	}
	return nil
}

func runServiceInstall(m serviceManager, deps serviceDeps, noEnable bool, w io.Writer) error {
	files, err := m.files()
	if err != nil {
		return err
	}
	for _, f := range files {
		old, err := os.ReadFile(f.Path)
		if err == nil && bytes.Equal(old, f.Content) {
			fmt.Fprintf(w, "Unchanged %s\n", f.Path)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(f.Path), err)
		}
		if err := writeFileAtomic(f.Path, f.Content, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "Wrote %s\n", f.Path)
	}
	if noEnable {
		fmt.Fprintf(w, "Not enabled (--no-enable). To start it now and at every login, run:\n  %s\n", m.enableHint())
	} else if err := m.enable(w); err != nil {
		return err
	}
	line, file := profileLine(deps.getenv("SHELL"), selfName())
	fmt.Fprintf(w, "\nAdd this line to %s so that every new shell uses the agent:\n  %s\n", file, line)
	fmt.Fprintf(w, "and run it once in this shell. Then check with: safe-agent status\n")
	return nil
}

// writeFileAtomic replaces path in one step, so that the init system never
// reads half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func runServiceUninstall(m serviceManager, w io.Writer) error {
	files, err := m.files()
	if err != nil {
		return err
	}
	present := 0
	for _, f := range files {
		if _, err := os.Stat(f.Path); err == nil {
			present++
		}
	}
	if present == 0 {
		fmt.Fprintln(w, "The service is not installed; nothing to remove.")
		return nil
	}
	m.disable(w)
	failed := false
	for _, f := range files {
		switch err := os.Remove(f.Path); {
		case err == nil:
			fmt.Fprintf(w, "Removed %s\n", f.Path)
		case errors.Is(err, fs.ErrNotExist):
		default:
			fmt.Fprintf(w, "Could not remove %s: %v\n", f.Path, err)
			failed = true
		}
	}
	m.forget()
	if failed {
		return exitCodeError{code: 1, msg: "some service files could not be removed; remove them by hand"}
	}
	fmt.Fprintln(w, "Keys in the keyring, the policy file and the audit log are unchanged. Remove the SSH_AUTH_SOCK line from your shell's start-up file too.")
	return nil
}

func runServiceStatus(m serviceManager, w io.Writer) error {
	files, err := m.files()
	if err != nil {
		return err
	}
	installed := 0
	for _, f := range files {
		old, err := os.ReadFile(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(w, "%s: not installed\n", f.Path)
		case err != nil:
			fmt.Fprintf(w, "%s: %v\n", f.Path, err)
		case bytes.Equal(old, f.Content):
			fmt.Fprintf(w, "%s: installed, up to date\n", f.Path)
			installed++
		default:
			fmt.Fprintf(w, "%s: installed, but differs from what this binary writes (another version or location): run `safe-agent service install` to update it\n", f.Path)
			installed++
		}
	}
	m.state(w)
	socket := defaultSocket()
	if st, err := agentStatus(socket); err == nil {
		fmt.Fprintf(w, "agent: answering on %s (pid %d)\n", socket, st.PID)
	} else {
		fmt.Fprintf(w, "agent: %v\n", err)
	}
	if installed == 0 {
		return exitCodeError{code: 1, msg: "the service is not installed: run `safe-agent service install`"}
	}
	return nil
}

// currentService is the service manager of this platform, for this binary.
func currentService() (serviceManager, error) {
	deps, err := defaultServiceDeps()
	if err != nil {
		return nil, err
	}
	return platformService(deps)
}
