package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"time"
)

// Limits on what a prompt program may print. More output than maxOutput
// is never a yes.
const (
	maxOutput = 4096
	maxStderr = 2048
	// waitDelay bounds how long Wait waits for the program's output pipes
	// after it was killed (a grandchild outside its process group might
	// hold them open).
	waitDelay = 2 * time.Second
)

// run is one finished prompt program.
type run struct {
	exit     int    // exit status; -1 when killed by a signal
	out      []byte // stdout, at most maxOutput bytes
	overflow bool   // stdout was longer than maxOutput
}

// wipe clears the captured output: a confused person may have typed a
// passphrase into an askpass box.
func (r *run) wipe() { clear(r.out) }

// program is an external prompt program and how to start it.
type program struct {
	path string
	log  *slog.Logger
	// started, if set, is told each process id (tests).
	started func(pid int)
}

// run starts the program with args and env, stdin from /dev/null, and
// waits for it. At ctx's end the whole process group is killed and the
// error wraps ErrTimeout (deadline) or ErrCancelled. A program killed by a
// signal it did not get from us is an error; a non-zero exit is not.
func (p *program) run(ctx context.Context, args, env []string) (run, error) {
	name := filepath.Base(p.path)
	if err := ctx.Err(); err != nil {
		return run{}, ctxError(name, err)
	}
	cmd := exec.CommandContext(ctx, p.path, args...)
	cmd.Env = env
	cmd.Stdin = nil // /dev/null
	out := newCapped(maxOutput)
	errOut := newCapped(maxStderr)
	cmd.Stdout = out
	cmd.Stderr = errOut
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return run{}, fmt.Errorf("start prompt program %s: %w", p.path, err)
	}
	if p.started != nil {
		p.started(cmd.Process.Pid)
	}
	err := cmd.Wait()
	r := run{out: out.b, overflow: out.overflow}
	if cerr := ctx.Err(); cerr != nil {
		// Whatever the program did at the last moment, the deadline won.
		r.wipe()
		return run{}, ctxError(name, cerr)
	}
	if len(errOut.b) > 0 {
		p.log.Debug("prompt program wrote to stderr", "program", name, "stderr", firstLine(errOut.b))
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.exit = 0
	case errors.As(err, &exitErr) && exitErr.Exited():
		r.exit = exitErr.ExitCode()
		if len(errOut.b) > 0 {
			p.log.Info("prompt program said no or failed", "program", name, "exit", r.exit, "stderr", firstLine(errOut.b))
		}
	case errors.As(err, &exitErr):
		r.wipe()
		return run{}, fmt.Errorf("prompt program %s crashed: %v", name, exitErr.ProcessState)
	default:
		r.wipe()
		return run{}, fmt.Errorf("prompt program %s: %w", name, err)
	}
	return r, nil
}

func ctxError(name string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("prompt program %s: %w", name, ErrTimeout)
	}
	return fmt.Errorf("prompt program %s: %w", name, ErrCancelled)
}

// firstLine is b's first line, at most 200 bytes, for a log.
func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// capped keeps the first bytes written to it, up to its capacity, and
// swallows the rest, so that a chatty program neither fills memory nor gets
// a broken pipe. Its buffer never grows, so wiping it wipes every copy.
type capped struct {
	b        []byte
	overflow bool
}

func newCapped(max int) *capped { return &capped{b: make([]byte, 0, max)} }

func (c *capped) Write(p []byte) (int, error) {
	room := cap(c.b) - len(c.b)
	if len(p) > room {
		c.overflow = true
		c.b = append(c.b, p[:room]...)
		return len(p), nil
	}
	c.b = append(c.b, p...)
	return len(p), nil
}
