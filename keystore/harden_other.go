//go:build unix && !linux && !darwin

package keystore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden sets RLIMIT_CORE to 0; this platform has no portable way to refuse
// debugger attachment.
func Harden() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("set RLIMIT_CORE to 0: %w", err)
	}
	return nil
}
