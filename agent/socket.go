package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// DefaultSocketPath is $XDG_RUNTIME_DIR/safe-agent/agent.sock, or a
// private directory under /tmp when XDG_RUNTIME_DIR is unset.
func DefaultSocketPath() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "safe-agent", "agent.sock")
	}
	return filepath.Join(os.TempDir(), "safe-agent-"+strconv.Itoa(os.Geteuid()), "agent.sock")
}

// Listen creates the agent socket at path: its directory is created 0700
// if missing and must be owned by us and not writable by others; the
// socket is made 0600. A live agent already answering there is an error;
// a stale socket file left by a dead agent is replaced.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create socket directory %s: %w", dir, err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, hint.Wrap(fmt.Errorf("%s exists and is not a socket", path), "remove it, or choose another socket path")
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, hint.Wrap(fmt.Errorf("an agent is already running on %s", path), "stop it first, or choose another socket path")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	return l, nil
}

// checkPrivateDir refuses a socket directory that someone else could
// tamper with: owned by another user, or writable by group or others.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return hint.Wrap(fmt.Errorf("socket directory %s is not a directory (a symlink?)", dir), "use a private directory")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return hint.Wrap(fmt.Errorf("socket directory %s is owned by uid %d, not by you (uid %d): another user could replace the socket", dir, st.Uid, os.Geteuid()),
			"use a directory you own")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return hint.Wrap(fmt.Errorf("socket directory %s is writable by others (mode %04o)", dir, fi.Mode().Perm()),
			fmt.Sprintf("run `chmod go-w %s`, or choose another socket path", dir))
	}
	return nil
}
