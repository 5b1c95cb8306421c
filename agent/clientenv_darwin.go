package agent

import "github.com/safe-agent/safe-agent/notify"

// readClientEnv: macOS dialogs need no display variables (osascript
// reaches the user's session by itself), so no client's are read.
func readClientEnv(int) *notify.Env { return nil }
