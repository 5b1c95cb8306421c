package keystore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden does what OpenSSH's ssh-agent does at start on macOS: it refuses
// debugger attachment (PT_DENY_ATTACH) and sets RLIMIT_CORE to 0.
func Harden() error {
	var errs []error
	if err := unix.PtraceDenyAttach(); err != nil {
		errs = append(errs, fmt.Errorf("ptrace(PT_DENY_ATTACH): %w", err))
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		errs = append(errs, fmt.Errorf("set RLIMIT_CORE to 0: %w", err))
	}
	return errors.Join(errs...)
}
