package notify

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
)

// needDisplay: macOS dialogs need no DISPLAY.
const needDisplay = false

const osascriptPath = "/usr/bin/osascript"

// osascript shows a macOS dialog. The text reaches the script as an
// argument, never as script source, so it cannot inject AppleScript.
// Deny is both the default button (Return) and the cancel button (Escape).
type osascript struct {
	prog program
	env  Env
}

var osascriptArgs = []string{
	"-e", "on run argv",
	"-e", `display dialog (item 1 of argv) with title "` + dialogTitle + `" buttons {"Deny", "Allow"} default button "Deny" cancel button "Deny" with icon caution`,
	"-e", "end run",
}

func newOSAScript(env Env, log *slog.Logger) (Confirmer, error) {
	if err := isExecutable(osascriptPath); err != nil {
		return nil, fmt.Errorf("osascript prompt: %w", err)
	}
	return &osascript{prog: program{path: osascriptPath, log: log}, env: env}, nil
}

func (o *osascript) Confirm(ctx context.Context, text string) (bool, error) {
	args := append(append([]string{}, osascriptArgs...), text)
	r, err := o.prog.run(ctx, args, o.env.list())
	if err != nil {
		return false, err
	}
	defer r.wipe()
	// Allow prints "button returned:Allow"; Deny is a cancel: exit 1.
	return r.exit == 0 && !r.overflow && bytes.Equal(bytes.TrimSpace(r.out), []byte("button returned:Allow")), nil
}

// Choose shows a dialog with Deny (the default), "Allow once" and the
// program label.
func (o *osascript) Choose(ctx context.Context, c Choices) (Choice, error) {
	r, err := o.prog.run(ctx, osascriptChoiceArgs(c), o.env.list())
	if err != nil {
		return ChoiceDeny, err
	}
	defer r.wipe()
	return osascriptChoice(r, c), nil
}

func (o *osascript) String() string { return "osascript" }

func autoPlatform(env Env, log *slog.Logger) Confirmer {
	c, err := newOSAScript(env, log)
	if err != nil {
		// A Mac without osascript but with XQuartz: try the X11 programs.
		if env.HasDisplay() {
			return autoDisplay(env, log)
		}
		return unavailable{err}
	}
	return c
}
