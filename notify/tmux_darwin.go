package notify

import (
	"errors"
	"os"
)

// Popup prompts need Linux: the client's tmux is found through /proc, and
// the helper discards type-ahead with TCFLSH.
var errTmuxLinuxOnly = errors.New("tmux popup prompts are supported on Linux only")

// FindTmux: see tmux_linux.go; macOS shows no other process's environment
// the way /proc does.
func FindTmux(int) (*TmuxTarget, error) { return nil, errTmuxLinuxOnly }

func flushInput(*os.File) {}
