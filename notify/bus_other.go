//go:build !((linux || freebsd || netbsd || openbsd || illumos) && !nodbus)

package notify

// sessionBusKnown: beeep uses no D-Bus here (macOS, Windows).
func sessionBusKnown() bool { return true }
