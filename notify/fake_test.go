//go:build linux

package notify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeScript is a stand-in prompt program. Each run appends one line to
// calls: "PID SSH_ASKPASS_PROMPT base64(argv[1]) base64(env)", and
// "start"/"end" lines to events; a second run starting while one is up
// is written to overlap. It then does what the answer file says:
//
//	empty     exit 0, print nothing        yes       print "yes", exit 0
//	no        print "no", exit 0           exit1     exit 1
//	yes-exit1 print "yes", exit 1          twolines  print "yes\nno", exit 0
//	flood     print 5000 bytes of "y"      crash     kill -SEGV itself
//	hang      start a child, sleep 60 (pids in children)
//
// With "wait" after the answer it first waits for the file release.
const fakeScript = `#!/bin/sh
d=%q
echo "$$ ${SSH_ASKPASS_PROMPT:--} $(printf '%%s' "$1" | base64 -w0) $(env | sort | base64 -w0)" >> "$d/calls"
mkdir "$d/lock" 2>/dev/null || echo "$$" >> "$d/overlap"
echo "start $$" >> "$d/events"
read -r answer wait < "$d/answer"
if [ "$wait" = wait ]; then
	while [ ! -e "$d/release" ]; do sleep 0.02; done
fi
finish() { echo "end $$" >> "$d/events"; rmdir "$d/lock"; }
case "$answer" in
empty) finish; exit 0 ;;
yes) finish; echo yes; exit 0 ;;
no) finish; echo no; exit 0 ;;
exit1) finish; exit 1 ;;
yes-exit1) finish; echo yes; exit 1 ;;
twolines) finish; printf 'yes\nno\n'; exit 0 ;;
flood) finish; head -c 5000 /dev/zero | tr '\0' y; exit 0 ;;
crash) finish; kill -SEGV $$ ;;
hang) sleep 60 & echo "$$ $!" > "$d/children"; wait ;;
esac
exit 3
`

// fake is a fake prompt program in a temporary directory.
type fake struct {
	t    *testing.T
	dir  string
	path string
}

// newFake writes the fake as dir/name (name "ssh-askpass", "zenity", …).
func newFake(t *testing.T, name, answer string) *fake {
	t.Helper()
	dir := t.TempDir()
	f := &fake{t: t, dir: dir, path: filepath.Join(dir, name)}
	if err := os.WriteFile(f.path, []byte(fmt.Sprintf(fakeScript, dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	f.answer(answer)
	return f
}

func (f *fake) answer(a string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "answer"), []byte(a+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fake) release() {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "release"), nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

type fakeCall struct {
	pid     int
	mode    string // SSH_ASKPASS_PROMPT, "-" when unset
	text    string // argv[1]
	environ []string
}

func (f *fake) calls() []fakeCall {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	// The fake may be writing its line right now (the file exists before
	// its first byte, and a long line takes several writes): only lines
	// that end in a newline are complete.
	s := string(b)
	end := strings.LastIndexByte(s, '\n')
	if end < 0 {
		return nil
	}
	var out []fakeCall
	for _, line := range strings.Split(s[:end], "\n") {
		fs := strings.Fields(line)
		if len(fs) < 3 {
			f.t.Fatalf("bad calls line %q", line)
		}
		pid, _ := strconv.Atoi(fs[0])
		text, err := base64.StdEncoding.DecodeString(fs[2])
		if err != nil {
			f.t.Fatal(err)
		}
		c := fakeCall{pid: pid, mode: fs[1], text: string(text)}
		if len(fs) > 3 {
			env, err := base64.StdEncoding.DecodeString(fs[3])
			if err != nil {
				f.t.Fatal(err)
			}
			c.environ = strings.Split(strings.TrimSpace(string(env)), "\n")
		}
		out = append(out, c)
	}
	return out
}

func (f *fake) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.dir, name))
	return string(b)
}

// waitFor polls cond for up to 10 s (a liveness bound, not a speed claim).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, cond)
}

func waitWithin(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone says whether pid no longer runs (no such process, or a zombie
// waiting for its new parent to reap it).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE …; comm may hold spaces, so cut at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
