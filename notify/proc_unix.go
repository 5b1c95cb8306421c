//go:build unix

package notify

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the program in a process group of its own and makes
// the context's end kill the whole group: an askpass script's children
// (the real dialog) go with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
