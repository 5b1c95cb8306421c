package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// A socket directory others can write is refused with a short message;
// what to do travels as a hint, and names no command-line flag.
func TestListenHintsBesideTheError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(filepath.Join(dir, "agent.sock"))
	if err == nil {
		t.Fatal("Listen in a world-writable directory succeeded")
	}
	if want := "socket directory " + dir + " is writable by others (mode 0777)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	h := hint.Of(err)
	if !strings.Contains(h, "chmod go-w "+dir) || strings.Contains(h, "--") {
		t.Errorf("hint = %q: want the chmod advice and no flag", h)
	}
}
