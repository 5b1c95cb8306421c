//go:build !linux

package notify

import (
	"errors"
	"os"
)

// Popup prompts need Linux: the client's tmux is found through /proc, and
// the helper discards type-ahead with TCFLSH.
func checkTmuxSocket(string, int) error {
	return errors.New("tmux popup prompts are supported on Linux only")
}

func flushInput(*os.File) {}
