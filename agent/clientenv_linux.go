package agent

import (
	"os"
	"strconv"
	"strings"

	"github.com/safe-agent/safe-agent/notify"
)

// readClientEnv reads the display variables of a local client process
// from /proc/PID/environ; nil when it names no display.
func readClientEnv(pid int) *notify.Env {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil
	}
	var list []string
	for _, kv := range strings.Split(string(b), "\x00") {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR":
			list = append(list, kv)
		}
	}
	e := notify.EnvFromList(list)
	if !e.HasDisplay() {
		return nil
	}
	return &e
}
