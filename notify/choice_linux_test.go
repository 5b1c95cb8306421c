//go:build linux

package notify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// choiceFakeScript is a stand-in zenity or kdialog: it writes each
// argument base64-encoded on a line of args, prints the file out (if
// any) and exits with the status in the file exit.
const choiceFakeScript = `#!/bin/sh
d=%q
: > "$d/args"
for a in "$@"; do printf '%%s' "$a" | base64 -w0 >> "$d/args"; echo >> "$d/args"; done
[ -e "$d/out" ] && cat "$d/out"
exit $(cat "$d/exit")
`

type choiceFake struct {
	t    *testing.T
	dir  string
	path string
}

func newChoiceFake(t *testing.T, name string) *choiceFake {
	t.Helper()
	dir := t.TempDir()
	f := &choiceFake{t: t, dir: dir, path: filepath.Join(dir, name)}
	if err := os.WriteFile(f.path, []byte(fmt.Sprintf(choiceFakeScript, dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// answer makes the next run print out and exit with code.
func (f *choiceFake) answer(code int, out string) {
	f.t.Helper()
	os.Remove(filepath.Join(f.dir, "out"))
	if out != "" {
		if err := os.WriteFile(filepath.Join(f.dir, "out"), []byte(out), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "exit"), []byte(fmt.Sprint(code)), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *choiceFake) args() []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "args"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		a, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, string(a))
	}
	return out
}

func choiceEnv(f *choiceFake) Env {
	return Env{Display: ":42", Path: f.dir + ":/usr/bin:/bin", Home: "/home/test"}
}

var testChoices = Choices{
	Text:         "Allow use of key \"work\"?\n\nNothing is remembered.",
	ChoiceText:   "Allow use of key \"work\"?\n\n\"Allow once\" covers this request only.",
	ProgramLabel: "Allow my_tool for 10 minutes",
}

// zenity: a question with "Allow once" (exit 0), "Deny" (exit 1, the
// default) and the program label as an extra button (exit 1, label on
// stdout). Anything else is a Deny.
func TestZenityChoices(t *testing.T) {
	f := newChoiceFake(t, "zenity")
	c := newTestConfirmer(t, KindZenity, choiceEnv(f))
	ch, ok := c.(Chooser)
	if !ok {
		t.Fatalf("zenity confirmer %T cannot show choices", c)
	}
	for _, tt := range []struct {
		name string
		exit int
		out  string
		want Choice
	}{
		{"allow once", 0, "", ChoiceOnce},
		{"allow program", 1, "Allow my__tool for 10 minutes\n", ChoiceProgram},
		{"deny or escape", 1, "", ChoiceDeny},
		{"label as shown, not as given", 1, "Allow my_tool for 10 minutes\n", ChoiceDeny},
		{"another label", 1, "Allow once\n", ChoiceDeny},
		{"label and more", 1, "Allow my__tool for 10 minutes\nx\n", ChoiceDeny},
		{"label with exit 0", 0, "Allow my__tool for 10 minutes\n", ChoiceDeny},
		{"zenity timeout", 5, "", ChoiceDeny},
		{"no display", 1, "", ChoiceDeny},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.exit, tt.out)
			got, err := ch.Choose(context.Background(), testChoices)
			if err != nil || got != tt.want {
				t.Errorf("Choose = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	want := []string{"--question", "--title", "safe-agent: allow key use?", "--text", testChoices.ChoiceText,
		"--ok-label", "Allow once", "--cancel-label", "Deny",
		"--extra-button", "Allow my__tool for 10 minutes",
		"--default-cancel", "--no-markup", "--width", "520"}
	if got := f.args(); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("zenity arguments:\n%q\nwant\n%q", got, want)
	}

	// Confirm still asks yes/no, with the yes/no text.
	f.answer(0, "")
	if yes, err := c.Confirm(context.Background(), testChoices.Text); !yes || err != nil {
		t.Errorf("Confirm = %v, %v", yes, err)
	}
	if got := f.args(); len(got) < 5 || got[4] != testChoices.Text || strings.Contains(strings.Join(got, " "), "--extra-button") {
		t.Errorf("yes/no zenity arguments: %q", got)
	}
}

// kdialog: a radio list with Deny preselected (Return takes it); the
// chosen tag is printed; Cancel and Escape exit 1.
func TestKDialogChoices(t *testing.T) {
	f := newChoiceFake(t, "kdialog")
	c := newTestConfirmer(t, KindKDialog, choiceEnv(f))
	ch, ok := c.(Chooser)
	if !ok {
		t.Fatalf("kdialog confirmer %T cannot show choices", c)
	}
	for _, tt := range []struct {
		name string
		exit int
		out  string
		want Choice
	}{
		{"allow once", 0, "once\n", ChoiceOnce},
		{"allow program", 0, "program\n", ChoiceProgram},
		{"deny (the preselected one)", 0, "deny\n", ChoiceDeny},
		{"cancel or escape", 1, "", ChoiceDeny},
		{"tag with exit 1", 1, "once\n", ChoiceDeny},
		{"nothing chosen", 0, "", ChoiceDeny},
		{"two lines", 0, "once\nprogram\n", ChoiceDeny},
		{"a label, not a tag", 0, "Allow once\n", ChoiceDeny},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.exit, tt.out)
			got, err := ch.Choose(context.Background(), testChoices)
			if err != nil || got != tt.want {
				t.Errorf("Choose = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	want := []string{"--title", "safe-agent: allow key use?", "--radiolist", kdialogText(testChoices.ChoiceText),
		"deny", "Deny", "on", "once", "Allow once", "off", "program", "Allow my_tool for 10 minutes", "off"}
	if got := f.args(); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("kdialog arguments:\n%q\nwant\n%q", got, want)
	}
}

// A prompt program's deadline is a refusal with ErrTimeout, as for
// Confirm.
func TestChooseDeadline(t *testing.T) {
	f := newChoiceFake(t, "zenity")
	if err := os.WriteFile(f.path, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newTestConfirmer(t, KindZenity, choiceEnv(f)).(Chooser)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got, err := c.Choose(ctx, testChoices)
	if got != ChoiceDeny || !errors.Is(err, ErrTimeout) {
		t.Errorf("Choose = %v, %v; want a deny with ErrTimeout", got, err)
	}
}

// Plain askpass programs (SSH_ASKPASS, gnome-ssh-askpass) and the tmux
// popup show yes/no only: Choose asks them the yes/no text.
func TestChooseYesNoPrograms(t *testing.T) {
	f := newFake(t, "ssh-askpass", "empty")
	c := newTestConfirmer(t, KindAskpass, fakeEnv(f))
	if _, ok := c.(Chooser); ok {
		t.Fatalf("askpass confirmer %T claims to show choices", c)
	}
	got, err := Choose(context.Background(), c, testChoices)
	if got != ChoiceYes || err != nil {
		t.Errorf("Choose = %v, %v; want ChoiceYes", got, err)
	}
	calls := f.calls()
	if len(calls) != 1 || calls[0].text != testChoices.Text || calls[0].mode != "confirm" {
		t.Errorf("askpass calls %+v, want one confirm with the yes/no text", calls)
	}
	f.answer("exit1")
	if got, err := Choose(context.Background(), c, testChoices); got != ChoiceDeny || err != nil {
		t.Errorf("askpass no: Choose = %v, %v", got, err)
	}
	if _, ok := Confirmer(&Tmux{}).(Chooser); ok {
		t.Error("the tmux popup claims to show choices")
	}
	if _, ok := Refuse(ErrNoDisplay).(Chooser); ok {
		t.Error("Refuse claims to show choices")
	}
}
