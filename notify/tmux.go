package notify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/safe-agent/safe-agent/internal/termtext"
)

// A prompt without a desktop: when no graphical prompt can be shown and
// the requesting client runs in a terminal inside tmux, the question is
// asked in a tmux popup on that client's tmux (display-popup, tmux ≥ 3.2).
//
// The popup runs a fixed helper program (safe-agent tmux-prompt) as an
// argv, never through a shell: the prompt text reaches it in a 0600 file
// in a 0700 directory, and the helper writes its yes to an answer file
// there. The answer is yes only when the popup exited 0 AND the answer
// file says yes: `tmux display-popup` also exits 0, without showing
// anything, when that tmux client already shows a popup or menu.

// ErrNoTmux: the client is not in a terminal inside tmux.
var ErrNoTmux = errors.New("the client is not running in a terminal inside tmux")

// TmuxTarget is the tmux a client runs in, read from its environment.
type TmuxTarget struct {
	Socket  string // the tmux server's socket (first field of $TMUX)
	Session string // "$N", the session id from $TMUX
	Pane    string // "%N" from $TMUX_PANE; may be empty
	PID     int    // the process whose environment named them
}

// TmuxOptions configure a tmux popup prompt.
type TmuxOptions struct {
	// Helper is the program the popup runs, with its first arguments;
	// the text file and the answer file are added. The agent passes
	// itself: {"/path/to/safe-agent", "tmux-prompt"}.
	Helper []string
	// Dir is where the text and answer files go, in a fresh 0700
	// directory (default $XDG_RUNTIME_DIR of the agent, else the temp
	// directory).
	Dir string
	// Env gives PATH, where tmux is looked up (never the client's).
	Env    Env
	Logger *slog.Logger
}

// Tmux asks in a tmux popup on the client's tmux session.
type Tmux struct {
	target TmuxTarget
	tmux   string
	o      TmuxOptions
	log    *slog.Logger
}

// NewTmux returns the popup prompt for target, or an error when tmux is
// not installed or no helper is given.
func NewTmux(target TmuxTarget, o TmuxOptions) (*Tmux, error) {
	if len(o.Helper) == 0 || !filepath.IsAbs(o.Helper[0]) {
		return nil, errors.New("tmux prompt: no helper program")
	}
	path, err := lookPath("tmux", o.Env.Path)
	if err != nil {
		return nil, fmt.Errorf("tmux prompt: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		o.Dir = o.Env.XDGRuntimeDir
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	return &Tmux{target: target, tmux: path, o: o, log: o.Logger}, nil
}

// OrTmux is c (or err) unless that cannot ask for want of a display:
// then the tmux popup on target, when it can be set up.
func OrTmux(c Confirmer, err error, target *TmuxTarget, o TmuxOptions) (Confirmer, error) {
	if target == nil {
		return c, err
	}
	noDisplay := errors.Is(err, ErrNoDisplay)
	if u, ok := c.(unavailable); ok && err == nil {
		noDisplay = errors.Is(u.err, ErrNoDisplay)
	}
	if !noDisplay {
		return c, err
	}
	t, terr := NewTmux(*target, o)
	if terr != nil {
		o.Logger.Info("no display, and no tmux popup either", "err", terr)
		return c, err
	}
	return t, nil
}

func (t *Tmux) String() string { return "tmux popup on " + t.target.Socket }

// answerYes is what the helper writes to the answer file for a yes.
const answerYes = "yes\n"

// Confirm shows text in a popup on the client's tmux session and waits
// for y or n. At ctx's end the popup is closed.
func (t *Tmux) Confirm(ctx context.Context, text string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, ctxError("tmux", err)
	}
	client, err := t.client(ctx)
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp(t.o.Dir, "safe-agent-prompt-")
	if err != nil {
		return false, fmt.Errorf("tmux prompt: %w", err)
	}
	defer os.RemoveAll(dir)
	textFile, answerFile := filepath.Join(dir, "text"), filepath.Join(dir, "answer")
	if err := os.WriteFile(textFile, []byte(text), 0o600); err != nil {
		return false, fmt.Errorf("tmux prompt: %w", err)
	}
	args := []string{"-S", t.target.Socket, "display-popup", "-E", "-c", client,
		"-w", "90%", "-h", strconv.Itoa(popupHeight(text)), "-T", " " + dialogTitle + " "}
	if t.target.Pane != "" {
		args = append(args, "-t", t.target.Pane)
	}
	// Several arguments: tmux runs them as an argv, with no shell.
	args = append(args, t.o.Helper...)
	args = append(args, textFile, answerFile)
	exit, err := t.popup(ctx, client, args)
	if err != nil {
		return false, err
	}
	answer, rerr := os.ReadFile(answerFile)
	switch {
	case exit == 0 && rerr == nil && string(answer) == answerYes:
		return true, nil
	case exit == 0:
		// tmux exits 0 without showing the popup when the client
		// already has one open.
		return false, errors.New("tmux popup was not shown (is another popup or menu open in that tmux?)")
	}
	return false, nil
}

// popup runs display-popup and waits; at ctx's end it closes the popup.
func (t *Tmux) popup(ctx context.Context, client string, args []string) (int, error) {
	cmd := exec.Command(t.tmux, args...)
	cmd.Env = t.o.Env.list()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("tmux prompt: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		t.close(client)
		_ = cmd.Process.Kill()
		<-waited
		return 0, ctxError("tmux", ctx.Err())
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr) && exitErr.Exited():
		if exitErr.ExitCode() != 1 && exitErr.ExitCode() != 129 && stderr.Len() > 0 {
			t.log.Info("tmux popup failed", "exit", exitErr.ExitCode(), "stderr", firstLine(stderr.Bytes()))
		}
		if strings.Contains(stderr.String(), "no current client") || strings.Contains(stderr.String(), "can't find") {
			return 0, fmt.Errorf("tmux popup: %s", firstLine(stderr.Bytes()))
		}
		return exitErr.ExitCode(), nil
	}
	return 0, fmt.Errorf("tmux popup: %w", err)
}

// close takes the popup down: display-popup has no timeout of its own.
func (t *Tmux) close(client string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.tmux, "-S", t.target.Socket, "display-popup", "-C", "-c", client)
	cmd.Env = t.o.Env.list()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.log.Info("closing the tmux popup", "err", err, "output", firstLine(out))
	}
}

// client picks the tmux client to show the popup on: of those attached
// to the session of the client's pane, the one used last.
func (t *Tmux) client(ctx context.Context) (string, error) {
	session := t.target.Session
	if t.target.Pane != "" {
		out, err := t.query(ctx, "display-message", "-p", "-t", t.target.Pane, "#{session_id}")
		if err != nil {
			return "", err
		}
		session = strings.TrimSpace(out)
	}
	out, err := t.query(ctx, "list-clients", "-F", "#{client_activity} #{session_id} #{client_name}")
	if err != nil {
		return "", err
	}
	best, bestAt := "", int64(-1)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) < 3 || f[1] != session {
			continue
		}
		at, _ := strconv.ParseInt(f[0], 10, 64)
		if at > bestAt {
			best, bestAt = f[2], at
		}
	}
	if best == "" {
		return "", fmt.Errorf("tmux prompt: no terminal is attached to tmux session %s", session)
	}
	return best, nil
}

func (t *Tmux) query(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.tmux, append([]string{"-S", t.target.Socket}, args...)...)
	cmd.Env = t.o.Env.list()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tmux %s: %w (%s)", args[0], err, firstLine(stderr.Bytes()))
	}
	return string(out), nil
}

// popupHeight fits the text (lines wrapped at ~76 columns) plus the
// question and the border.
func popupHeight(text string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		n += 1 + len([]rune(line))/76
	}
	return min(n+5, 40)
}

// Limits of the helper.
const (
	maxPromptText = 64 << 10
	// TypeAhead is how long the helper ignores keys after it shows the
	// question: a person typing into the pane when the popup appears
	// must not answer it by accident.
	TypeAhead = 400 * time.Millisecond
)

// RunTmuxPrompt is the popup's side (safe-agent tmux-prompt TEXT ANSWER):
// it shows the text from textFile, reads a line from the terminal in,
// and for "y" or "yes" writes the yes to answerFile (created, 0600) and
// returns 0; anything else returns 1. Keys typed before the question is
// up, and for typeAhead after it showed, are discarded.
func RunTmuxPrompt(in *os.File, out io.Writer, textFile, answerFile string, typeAhead time.Duration) int {
	text, err := readLimited(textFile, maxPromptText)
	if err != nil {
		fmt.Fprintf(out, "safe-agent: %v\n", err)
		return 1
	}
	// The agent escaped the text already; escape again line by line in
	// case the file came from elsewhere: nothing may reach the terminal
	// as a control sequence.
	fmt.Fprintln(out, termtext.EscapeLines(text))
	time.Sleep(typeAhead)
	flushInput(in)
	fmt.Fprint(out, "\nAllow? Type y and Enter to allow, Enter to deny [y/N] ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
	default:
		return 1
	}
	f, err := os.OpenFile(answerFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(out, "safe-agent: %v\n", err)
		return 1
	}
	_, werr := f.WriteString(answerYes)
	if cerr := f.Close(); werr != nil || cerr != nil {
		return 1
	}
	return 0
}

func readLimited(path string, max int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return "", err
	}
	return string(b), nil
}
