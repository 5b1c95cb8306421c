//go:build linux && !nodbus

package notify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/godbus/dbus/v5"
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

// capabilitiesWait bounds the GetCapabilities call: a hung notification
// server must not hold the notifier.
const capabilitiesWait = 2 * time.Second

// bodyMarkup reports whether the notification server may read a body as
// markup: it lists the "body-markup" capability, or it cannot be asked
// (then beeep's fallbacks, notify-send and kdialog, reach a server that
// reads markup too; a stray "&lt;" shown on a plain-text server is better
// than markup taken from a client). Call it only when sessionBusKnown:
// godbus would otherwise start a bus of its own.
func bodyMarkup() bool {
	conn, err := dbus.SessionBus()
	if err != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), capabilitiesWait)
	defer cancel()
	var caps []string
	err = conn.Object("org.freedesktop.Notifications", "/org/freedesktop/Notifications").
		CallWithContext(ctx, "org.freedesktop.Notifications.GetCapabilities", 0).Store(&caps)
	return err != nil || slices.Contains(caps, "body-markup")
}
