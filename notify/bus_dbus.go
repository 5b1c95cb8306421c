//go:build (linux || freebsd || netbsd || openbsd || illumos) && !nodbus

package notify

import (
	"fmt"
	"os"
	"path/filepath"
)

// sessionBusKnown mirrors how beeep's D-Bus library finds the session bus
// without starting one: the environment, or $XDG_RUNTIME_DIR/bus. (It
// reads the process environment because that is what beeep reads.)
func sessionBusKnown() bool {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return true
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = fmt.Sprintf("/run/user/%d", os.Getuid())
	}
	fi, err := os.Stat(filepath.Join(dir, "bus"))
	return err == nil && fi.Mode().Type() == os.ModeSocket
}
