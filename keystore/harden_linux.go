package keystore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden does what OpenSSH's ssh-agent does at start on Linux: it makes the
// process non-dumpable (PR_SET_DUMPABLE 0: no core file, and processes of the
// same user can no longer ptrace it or read /proc/PID/mem, maps or environ)
// and sets RLIMIT_CORE to 0. Call it once, early, in the agent process.
func Harden() error {
	var errs []error
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err))
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		errs = append(errs, fmt.Errorf("set RLIMIT_CORE to 0: %w", err))
	}
	return errors.Join(errs...)
}
