package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Confirmer asks the person one yes/no question. Confirm returns true only
// for an explicit yes. ctx carries the deadline: at its end the prompt is
// taken down and Confirm returns false with an error wrapping ErrTimeout
// (deadline) or ErrCancelled. A "no" is (false, nil); a prompt that could
// not be shown or crashed is (false, err).
type Confirmer interface {
	Confirm(ctx context.Context, text string) (bool, error)
}

// Choice is the person's answer to a question that may offer choices
// (see Chooser and Choose).
type Choice int

const (
	// ChoiceDeny: Deny, Escape, a closed window, or anything unclear.
	ChoiceDeny Choice = iota
	// ChoiceYes: a yes from a prompt that shows only yes and no; the
	// policy's remember applies to it, as it always did.
	ChoiceYes
	// ChoiceOnce: "Allow once"; nothing is remembered.
	ChoiceOnce
	// ChoiceProgram: "Allow <program> for N minutes"; the yes is
	// remembered for N for the same program (see Question.ProgramFor).
	ChoiceProgram
)

// Button labels of a three-choice prompt.
const (
	labelOnce = "Allow once"
	labelDeny = "Deny"
)

// Choices is a question for a prompt that may offer three choices.
type Choices struct {
	// Text is the question as a yes/no prompt shows it.
	Text string
	// ChoiceText is the question as a three-choice prompt shows it: it
	// says what each choice does.
	ChoiceText string
	// ProgramLabel is the label of the third choice, "Allow ssh-keygen
	// for 10 minutes" (see ProgramLabel).
	ProgramLabel string
}

// Chooser is a Confirmer whose prompt can show "Allow once", a program
// label and "Deny". Deny is the default (Return) and what Escape or
// closing the window means. The error cases are those of Confirm, with
// ChoiceDeny.
type Chooser interface {
	Confirmer
	Choose(ctx context.Context, c Choices) (Choice, error)
}

// Choose asks c with conf: with three choices when conf is a Chooser,
// else as a yes/no question with c.Text, whose yes is ChoiceYes.
func Choose(ctx context.Context, conf Confirmer, c Choices) (Choice, error) {
	if ch, ok := conf.(Chooser); ok {
		return ch.Choose(ctx, c)
	}
	yes, err := conf.Confirm(ctx, c.Text)
	if yes && err == nil {
		return ChoiceYes, nil
	}
	return ChoiceDeny, err
}

// maxProgramName bounds the program name on a button, in runes.
const maxProgramName = 40

// ProgramLabel is the label of the "allow this program" choice: `Allow
// ssh-keygen for 10 minutes`. exe is the program's executable path; its
// base name is shown (quoted when it holds unusual characters, so that a
// name cannot read as more words).
func ProgramLabel(exe string, d time.Duration) string {
	name := "this program"
	if base := filepath.Base(exe); exe != "" && base != "/" && base != "." {
		name = word(base)
		if len([]rune(name)) > maxProgramName {
			name = quote(base, maxProgramName-3)
		}
	}
	return "Allow " + name + " for " + longDuration(d)
}

// longDuration says d in words for a button: "10 minutes", "1 hour",
// "90 seconds"; other lengths as formatDuration writes them ("1h30m").
func longDuration(d time.Duration) string {
	d = d.Round(time.Second)
	unit := func(n time.Duration, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(int64(n), 10) + " " + one + "s"
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(d/time.Hour, "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(d/time.Minute, "minute")
	case d < time.Minute && d >= time.Second:
		return unit(d/time.Second, "second")
	}
	return formatDuration(d)
}

var (
	// ErrTimeout: nobody answered before the deadline.
	ErrTimeout = errors.New("no answer before the deadline")
	// ErrCancelled: the question was withdrawn before it was answered.
	ErrCancelled = errors.New("prompt cancelled: the request went away")
	// ErrNoDisplay: there is no graphical session to show a prompt in.
	ErrNoDisplay = errors.New("no display: DISPLAY and WAYLAND_DISPLAY are unset; start the agent from your desktop session or run `systemctl --user import-environment DISPLAY WAYLAND_DISPLAY XAUTHORITY`")
	// ErrNoProgram: no prompt program is installed.
	ErrNoProgram = errors.New("no prompt program found: install ssh-askpass-gnome or zenity, or set SSH_ASKPASS to an askpass program")
)

// Prompt program kinds, as the policy's prompt setting names them; any
// other value must be an absolute path to an askpass-protocol program.
const (
	KindAuto      = "auto"
	KindAskpass   = "askpass"
	KindZenity    = "zenity"
	KindKDialog   = "kdialog"
	KindOSAScript = "osascript"
)

// dialogTitle is the window title of zenity and kdialog prompts.
const dialogTitle = "safe-agent: allow key use?"

// Where askpass programs are looked for (kind "askpass"): first these
// names on PATH, then these files.
var (
	askpassNames = []string{"ssh-askpass", "ksshaskpass", "lxqt-openssh-askpass"}
	askpassFiles = []string{
		"/usr/lib/openssh/gnome-ssh-askpass",
		"/usr/libexec/openssh/gnome-ssh-askpass",
		"/usr/lib/ssh/ssh-askpass",
		"/usr/bin/ssh-askpass",
		"/usr/libexec/openssh/ssh-askpass",
	}
)

// NewConfirmer returns the Confirmer for a policy's prompt setting:
//
//   - "auto" (or ""): $SSH_ASKPASS when env sets it; otherwise on macOS an
//     osascript dialog, elsewhere the first installed of gnome-ssh-askpass,
//     ksshaskpass, lxqt-openssh-askpass, zenity, kdialog and ssh-askpass,
//     provided env names a display. When nothing can be shown, the result
//     is a Confirmer that refuses every question with the reason
//     (ErrNoDisplay, ErrNoProgram); auto never returns an error.
//   - "askpass": OpenSSH's SSH_ASKPASS protocol with $SSH_ASKPASS, or the
//     first of ssh-askpass, ksshaskpass, lxqt-openssh-askpass on PATH, or
//     a known askpass file.
//   - "zenity", "kdialog": a question dialog whose default button is Deny.
//   - "osascript": a macOS dialog whose default button is Deny.
//   - "/path/to/program": that program, spoken to with the askpass protocol.
//
// For the explicit kinds an error says why the program cannot be used
// (not installed, no display); Refuse turns it into a Confirmer that
// refuses with that reason. Programs are looked up on env.Path, and run
// with only env's variables.
func NewConfirmer(kind string, env Env, log *slog.Logger) (Confirmer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch kind {
	case "", KindAuto:
		return autoConfirmer(env, log), nil
	case KindAskpass:
		return newAskpass(env, log)
	case KindZenity, KindKDialog:
		if needDisplay && !env.HasDisplay() {
			return nil, fmt.Errorf("%s prompt: %w", kind, ErrNoDisplay)
		}
		path, err := lookPath(kind, env.Path)
		if err != nil {
			return nil, fmt.Errorf("%s prompt: %w (install the %s package, or use prompt = \"auto\")", kind, err, kind)
		}
		return newDialog(kind, path, env, log), nil
	case KindOSAScript:
		return newOSAScript(env, log)
	}
	if !filepath.IsAbs(kind) {
		return nil, fmt.Errorf("prompt %q: use auto, askpass, zenity, kdialog, osascript or an absolute path to an askpass program", kind)
	}
	path, err := lookPath(kind, "")
	if err != nil {
		return nil, fmt.Errorf("prompt program: %w", err)
	}
	return &askpass{prog: program{path: path, log: log}, env: env}, nil
}

// Refuse is a Confirmer that shows nothing and refuses every question with
// reason: what the agent uses when no prompt can be shown.
func Refuse(reason error) Confirmer { return unavailable{reason} }

type unavailable struct{ err error }

func (u unavailable) Confirm(ctx context.Context, text string) (bool, error) {
	return false, fmt.Errorf("cannot ask: %w", u.err)
}

func (u unavailable) String() string { return "no prompt (" + u.err.Error() + ")" }

// autoConfirmer implements kind "auto".
func autoConfirmer(env Env, log *slog.Logger) Confirmer {
	if env.SSHAskpass != "" {
		c, err := newAskpass(env, log)
		if err != nil {
			return unavailable{err}
		}
		return c
	}
	return autoPlatform(env, log)
}

type autoCandidate struct {
	kind  string // KindAskpass or a dialog kind
	names []string
}

// autoCandidates are tried in order by auto on systems with X11/Wayland.
var autoCandidates = []autoCandidate{
	{KindAskpass, []string{"/usr/lib/openssh/gnome-ssh-askpass", "/usr/libexec/openssh/gnome-ssh-askpass"}},
	{KindAskpass, []string{"ksshaskpass", "lxqt-openssh-askpass"}},
	{KindZenity, []string{"zenity"}},
	{KindKDialog, []string{"kdialog"}},
	// x11-ssh-askpass ignores confirm mode and shows a passphrase box: OK
	// with nothing typed is a yes, anything typed a no. Last resort.
	{KindAskpass, []string{"ssh-askpass", "/usr/lib/ssh/ssh-askpass", "/usr/bin/ssh-askpass", "/usr/libexec/openssh/ssh-askpass"}},
}

// autoDisplay picks the first installed candidate for a display session.
func autoDisplay(env Env, log *slog.Logger) Confirmer {
	return autoDisplayFrom(env, log, autoCandidates)
}

func autoDisplayFrom(env Env, log *slog.Logger, candidates []autoCandidate) Confirmer {
	if !env.HasDisplay() {
		return unavailable{ErrNoDisplay}
	}
	for _, c := range candidates {
		for _, name := range c.names {
			path, err := lookPath(name, env.Path)
			if err != nil {
				continue
			}
			if c.kind == KindAskpass {
				return &askpass{prog: program{path: path, log: log}, env: env}
			}
			return newDialog(c.kind, path, env, log)
		}
	}
	return unavailable{ErrNoProgram}
}

// askpass speaks OpenSSH's SSH_ASKPASS confirm protocol: the text is the
// only argument, SSH_ASKPASS_PROMPT=confirm is set, and the answer is yes
// only when the program exits 0 and prints nothing or "yes".
type askpass struct {
	prog program
	env  Env
}

func newAskpass(env Env, log *slog.Logger) (*askpass, error) {
	if env.SSHAskpass != "" {
		path, err := lookPath(env.SSHAskpass, env.Path)
		if err != nil {
			return nil, fmt.Errorf("SSH_ASKPASS: %w", err)
		}
		return &askpass{prog: program{path: path, log: log}, env: env}, nil
	}
	if needDisplay && !env.HasDisplay() {
		return nil, fmt.Errorf("askpass prompt: %w", ErrNoDisplay)
	}
	for _, name := range append(append([]string{}, askpassNames...), askpassFiles...) {
		if path, err := lookPath(name, env.Path); err == nil {
			return &askpass{prog: program{path: path, log: log}, env: env}, nil
		}
	}
	return nil, fmt.Errorf("askpass prompt: no askpass program found (looked for %s on PATH and %s): install ssh-askpass-gnome, or set SSH_ASKPASS",
		strings.Join(askpassNames, ", "), strings.Join(askpassFiles, ", "))
}

func (a *askpass) Confirm(ctx context.Context, text string) (bool, error) {
	r, err := a.prog.run(ctx, []string{text}, a.env.list("SSH_ASKPASS_PROMPT=confirm"))
	if err != nil {
		return false, err
	}
	defer r.wipe()
	if r.exit != 0 {
		return false, nil
	}
	// OpenSSH cuts the output at the first line break; we insist on one
	// line at most, so "yes\nno" is not a yes.
	out := r.out
	out = bytes.TrimSuffix(out, []byte("\n"))
	out = bytes.TrimSuffix(out, []byte("\r"))
	if r.overflow || (len(out) > 0 && !bytes.EqualFold(out, []byte("yes"))) {
		a.prog.log.Debug("prompt program printed something other than nothing or \"yes\"; taken as no", "program", filepath.Base(a.prog.path), "bytes", len(r.out))
		return false, nil
	}
	return true, nil
}

func (a *askpass) String() string { return "askpass " + a.prog.path }

// dialog is a zenity or kdialog question: exit status 0 is yes.
type dialog struct {
	kind string
	prog program
	env  Env
}

func newDialog(kind, path string, env Env, log *slog.Logger) *dialog {
	return &dialog{kind: kind, prog: program{path: path, log: log}, env: env}
}

func (d *dialog) args(text string) []string {
	if d.kind == KindKDialog {
		// warningyesno's default button is No.
		return []string{"--title", dialogTitle, "--warningyesno", kdialogText(text), "--yes-label", "Allow", "--no-label", "Deny"}
	}
	// --default-cancel: Return denies. --no-markup: a key comment like
	// "<b>x</b>" is shown as typed (zenity reads --text as Pango markup
	// otherwise).
	return []string{"--question", "--title", dialogTitle, "--text", text,
		"--ok-label", "Allow", "--cancel-label", "Deny", "--default-cancel", "--no-markup", "--width", "480"}
}

func (d *dialog) Confirm(ctx context.Context, text string) (bool, error) {
	r, err := d.prog.run(ctx, d.args(text), d.env.list())
	if err != nil {
		return false, err
	}
	r.wipe()
	return r.exit == 0, nil
}

// Radiolist tags of kdialog's three-choice prompt: what it prints.
const (
	kdialogTagDeny    = "deny"
	kdialogTagOnce    = "once"
	kdialogTagProgram = "program"
)

// choiceArgs are the arguments of a three-choice prompt.
//
// zenity (checked with 3.44): a question whose OK button is "Allow once"
// (exit 0), Cancel "Deny" (exit 1, the default with --default-cancel;
// Escape and closing the window are exit 1 too) and an extra button with
// the program label, which exits 1 and prints its label.
//
// kdialog (checked with 22.12): its three-button dialogs make the first
// button the default and Escape the third, so no order makes Return and
// Escape both deny. A radio list with Deny preselected does: OK prints
// the chosen tag, Return takes the selection, Cancel and Escape exit 1.
func (d *dialog) choiceArgs(c Choices) []string {
	if d.kind == KindKDialog {
		return []string{"--title", dialogTitle, "--radiolist", kdialogText(c.ChoiceText),
			kdialogTagDeny, labelDeny, "on",
			kdialogTagOnce, labelOnce, "off",
			kdialogTagProgram, c.ProgramLabel, "off"}
	}
	// GTK reads an underscore in a button label as a mnemonic; doubled,
	// it is shown as typed. zenity prints the label as given.
	return []string{"--question", "--title", dialogTitle, "--text", c.ChoiceText,
		"--ok-label", labelOnce, "--cancel-label", labelDeny,
		"--extra-button", gtkLabel(c.ProgramLabel),
		"--default-cancel", "--no-markup", "--width", "520"}
}

// osascriptChoiceScript shows macOS's three-button dialog. The text and
// the program label reach it as arguments, never as script source, so
// they cannot inject AppleScript. Deny is both the default button
// (Return) and the cancel button (Escape, exit 1).
var osascriptChoiceScript = []string{
	"-e", "on run argv",
	"-e", `display dialog (item 1 of argv) with title "` + dialogTitle + `" buttons {"` + labelDeny + `", "` + labelOnce + `", (item 2 of argv)} default button "` + labelDeny + `" cancel button "` + labelDeny + `" with icon caution`,
	"-e", "end run",
}

func osascriptChoiceArgs(c Choices) []string {
	return append(append([]string{}, osascriptChoiceScript...), c.ChoiceText, c.ProgramLabel)
}

// osascriptChoice reads the dialog's answer: it prints "button
// returned:LABEL" and exits 0 for the buttons other than Deny.
func osascriptChoice(r run, c Choices) Choice {
	if r.exit != 0 || r.overflow {
		return ChoiceDeny
	}
	switch string(bytes.TrimSpace(r.out)) {
	case "button returned:" + labelOnce:
		return ChoiceOnce
	case "button returned:" + c.ProgramLabel:
		return ChoiceProgram
	}
	return ChoiceDeny
}

// gtkLabel is s as a GTK button label that shows s.
func gtkLabel(s string) string { return strings.ReplaceAll(s, "_", "__") }

// Choose shows the three-choice prompt. Only an exact, known answer
// allows: anything else the program does or prints is a Deny.
func (d *dialog) Choose(ctx context.Context, c Choices) (Choice, error) {
	r, err := d.prog.run(ctx, d.choiceArgs(c), d.env.list())
	if err != nil {
		return ChoiceDeny, err
	}
	defer r.wipe()
	if r.overflow {
		return ChoiceDeny, nil
	}
	out := string(bytes.TrimSuffix(r.out, []byte("\n")))
	if d.kind == KindKDialog {
		if r.exit != 0 {
			return ChoiceDeny, nil
		}
		switch out {
		case kdialogTagOnce:
			return ChoiceOnce, nil
		case kdialogTagProgram:
			return ChoiceProgram, nil
		}
		return ChoiceDeny, nil
	}
	switch {
	case r.exit == 0 && out == "":
		return ChoiceOnce, nil
	case r.exit == 1 && out != "" && out == gtkLabel(c.ProgramLabel):
		return ChoiceProgram, nil
	}
	return ChoiceDeny, nil
}

func (d *dialog) String() string { return d.kind + " " + d.prog.path }

// kdialogEscaper turns plain text into what kdialog shows as that text.
// kdialog reads two escapes in a message itself ("\n" is a line break,
// "\\" a backslash), so the "\n" that Prompt.Text writes for a newline
// inside a user name would become a real line; and Qt guesses whether a
// message is rich text (an HTML tag such as "<b>" on its first line makes
// it so), after which "<br>" in any field would add a line. So every
// backslash is doubled and the text is always rich text, with "&", "<"
// and ">" escaped and the prompt's own line breaks written as <br>.
var kdialogEscaper = strings.NewReplacer(`\`, `\\`, "&", "&amp;", "<", "&lt;", ">", "&gt;", "\n", "<br>")

// kdialogText is text as a kdialog message; "<qt>" makes Qt read it as
// rich text whatever it holds.
func kdialogText(text string) string { return "<qt>" + kdialogEscaper.Replace(text) + "</qt>" }

// lookPath finds an executable: name itself when it contains a slash,
// else in the absolute directories of pathList (defaultPath when empty).
// Unlike exec.LookPath it never reads the agent's own PATH, and it ignores
// relative PATH entries.
func lookPath(name, pathList string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("%s: use an absolute path", name)
		}
		if err := isExecutable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	if pathList == "" {
		pathList = defaultPath
	}
	for _, dir := range filepath.SplitList(pathList) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH %s", name, pathList)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return &fs.PathError{Op: "run", Path: path, Err: errors.New("not an executable file")}
	}
	return nil
}
