//go:build !((linux || freebsd || netbsd || openbsd || illumos) && !nodbus)

package notify

import "runtime"

// sessionBusKnown: beeep uses no D-Bus here (macOS, Windows).
func sessionBusKnown() bool { return true }

// bodyMarkup: macOS and Windows notifications are plain text; built with
// nodbus on a Unix desktop, beeep runs notify-send, whose server reads
// the body as markup.
func bodyMarkup() bool { return runtime.GOOS != "darwin" && runtime.GOOS != "windows" }
