//go:build !linux || nodbus

package notify

import "runtime"

// sessionBusKnown: beeep uses no D-Bus here (macOS, or Linux built with nodbus).
func sessionBusKnown() bool { return true }

// bodyMarkup: macOS notifications are plain text; built with nodbus on
// Linux, beeep runs notify-send, whose server reads the body as markup.
func bodyMarkup() bool { return runtime.GOOS != "darwin" }
