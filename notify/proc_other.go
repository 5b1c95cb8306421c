//go:build !unix

package notify

import "os/exec"

// setProcessGroup: without process groups, the context's end kills the
// program itself (exec.CommandContext's default).
func setProcessGroup(cmd *exec.Cmd) {}
