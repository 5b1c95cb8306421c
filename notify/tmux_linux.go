package notify

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkTmuxSocket: the client's environment names the socket, so make
// sure it is a socket of this user before the agent talks to it.
func checkTmuxSocket(path string, uid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("tmux socket from the client's TMUX: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != fs.ModeSocket || !ok || int(st.Uid) != uid {
		return fmt.Errorf("tmux socket %s from the client's TMUX is not a socket of uid %d", path, uid)
	}
	return nil
}

// flushInput discards what was typed into the terminal but not read yet.
func flushInput(in *os.File) {
	_ = unix.IoctlSetInt(int(in.Fd()), unix.TCFLSH, unix.TCIFLUSH)
}
