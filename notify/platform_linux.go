package notify

import (
	"errors"
	"log/slog"
)

// needDisplay: X11 and Wayland prompts need DISPLAY or WAYLAND_DISPLAY.
const needDisplay = true

func newOSAScript(Env, *slog.Logger) (Confirmer, error) {
	return nil, errors.New(`prompt "osascript" works only on macOS: use prompt = "auto"`)
}

func autoPlatform(env Env, log *slog.Logger) Confirmer { return autoDisplay(env, log) }
