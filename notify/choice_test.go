package notify

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// chooser is a Chooser that answers from a list of choices, as the person
// would, and records what each prompt was given.
type chooser struct {
	mu      sync.Mutex
	replies []Choice
	asked   []Choices
	yesNo   []string // Confirm calls: there should be none
}

func (c *chooser) Confirm(ctx context.Context, text string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.yesNo = append(c.yesNo, text)
	return false, errors.New("test: yes/no prompt shown by a chooser")
}

func (c *chooser) Choose(ctx context.Context, q Choices) (Choice, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, q)
	if len(c.replies) == 0 {
		return ChoiceDeny, errors.New("test: unexpected prompt")
	}
	r := c.replies[0]
	c.replies = c.replies[1:]
	return r, nil
}

func (c *chooser) count() (choices, yesNo int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.asked), len(c.yesNo)
}

// programQ is a question from program exe, offering it for d.
func programQ(exe string, d, remember time.Duration) Question {
	q := question("SHA256:k", "sign a file", "here", remember)
	q.Scope += "|" + exe
	q.FatigueScope += "|" + exe
	q.ProgramFor, q.Program = d, exe
	return q
}

// "Allow <program> for N" covers the same question from the same program
// for N, and nothing else; "Allow once" covers nothing more; "Deny"
// refuses and counts towards prompt fatigue.
func TestAskerProgramChoice(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	c := &chooser{replies: []Choice{ChoiceProgram, ChoiceOnce, ChoiceOnce, ChoiceDeny, ChoiceOnce}}
	a := NewAsker(c, AskerOptions{Now: clock.Now})
	ctx := context.Background()
	keygen := programQ("/usr/bin/ssh-keygen", 10*time.Minute, 0)
	copyQ := programQ("/tmp/x/ssh-keygen", 10*time.Minute, 0)

	steps := []struct {
		advance      time.Duration
		q            Question
		want         Outcome
		wantRemember time.Duration
		wantPrompts  int // Choose calls so far
	}{
		{0, keygen, OutcomeYesProgram, 10 * time.Minute, 1},
		{9 * time.Minute, keygen, OutcomeRemembered, 0, 1},
		{0, copyQ, OutcomeYes, 0, 2}, // another executable is asked: "Allow once"
		{0, copyQ, OutcomeYes, 0, 3}, // and "Allow once" covered only that one
		{0, copyQ, OutcomeNo, 0, 4},  // Deny
		{time.Minute, keygen, OutcomeYes, 0, 5},
	}
	for i, s := range steps {
		clock.Add(s.advance)
		ans := a.Ask(ctx, s.q)
		if ans.Outcome != s.want || ans.Remember != s.wantRemember || ans.Yes != (s.want != OutcomeNo) {
			t.Errorf("step %d: %+v, want %s remembering %v", i, ans, s.want, s.wantRemember)
		}
		if n, yn := c.count(); n != s.wantPrompts || yn != 0 {
			t.Errorf("step %d: %d three-choice and %d yes/no prompts, want %d and 0", i, n, yn, s.wantPrompts)
		}
	}

	c.mu.Lock()
	got := c.asked[0]
	c.mu.Unlock()
	if got.ProgramLabel != "Allow ssh-keygen for 10 minutes" {
		t.Errorf("program label %q", got.ProgramLabel)
	}
	for _, want := range []string{`"Allow once" covers this request only.`,
		`"Allow ssh-keygen for 10 minutes" also lets /usr/bin/ssh-keygen use this key for the same purpose and path for 10 minutes without asking.`} {
		if !strings.Contains(got.ChoiceText, want) {
			t.Errorf("three-choice text lacks %q:\n%s", want, got.ChoiceText)
		}
	}
	if strings.Contains(got.ChoiceText, "Nothing is remembered") {
		t.Errorf("three-choice text still says nothing is remembered:\n%s", got.ChoiceText)
	}
	if !strings.HasSuffix(got.Text, "Nothing is remembered.") || strings.Contains(got.Text, "Allow once") {
		t.Errorf("yes/no text:\n%s", got.Text)
	}
}

// A policy remember longer than zero is N: the yes/no text of the same
// question keeps saying what a plain yes remembers.
func TestAskerProgramChoiceUsesRemember(t *testing.T) {
	c := &chooser{replies: []Choice{ChoiceProgram}}
	a := NewAsker(c, AskerOptions{})
	ans := a.Ask(context.Background(), programQ("/usr/bin/git", 5*time.Minute, 5*time.Minute))
	if ans.Outcome != OutcomeYesProgram || ans.Remember != 5*time.Minute {
		t.Errorf("answer %+v, want yes-program for 5m", ans)
	}
	got := c.asked[0]
	if got.ProgramLabel != "Allow git for 5 minutes" {
		t.Errorf("label %q", got.ProgramLabel)
	}
	if !strings.HasSuffix(got.Text, "A yes is remembered for 5m for this key, path and program.") {
		t.Errorf("yes/no text:\n%s", got.Text)
	}
}

// A prompt program that shows only yes and no (askpass, tmux) is asked
// the yes/no text, and its yes is remembered for the policy's remember
// as before; a question that offers no choices never shows them.
func TestAskerChoicesFallBackToYesNo(t *testing.T) {
	s := &scripted{replies: []reply{{yes: true}, {yes: true}}}
	a := NewAsker(s, AskerOptions{})
	q := programQ("/usr/bin/ssh", 10*time.Minute, 2*time.Minute)
	ans := a.Ask(context.Background(), q)
	if ans.Outcome != OutcomeYes || ans.Remember != 2*time.Minute {
		t.Errorf("answer %+v, want yes remembered for the policy's 2m", ans)
	}
	if ans := a.Ask(context.Background(), q); ans.Outcome != OutcomeRemembered {
		t.Errorf("second answer %+v, want remembered", ans)
	}
	if len(s.texts) != 1 || !strings.HasSuffix(s.texts[0], "A yes is remembered for 2m for this key, path and program.") ||
		strings.Contains(s.texts[0], "Allow once") {
		t.Errorf("yes/no prompt texts: %q", s.texts)
	}

	c := &chooser{}
	a = NewAsker(c, AskerOptions{})
	q.ProgramFor = 0 // e.g. a key added with ssh-add -c
	if ans := a.Ask(context.Background(), q); ans.Yes {
		t.Errorf("answer %+v from a chooser's Confirm, want a refusal", ans)
	}
	if n, yn := c.count(); n != 0 || yn != 1 {
		t.Errorf("%d three-choice and %d yes/no prompts, want 0 and 1", n, yn)
	}
}

// Three Denies in a row start a cooldown, as three noes do.
func TestAskerDenyCountsAsNo(t *testing.T) {
	c := &chooser{replies: []Choice{ChoiceDeny, ChoiceDeny, ChoiceDeny}}
	a := NewAsker(c, AskerOptions{})
	q := programQ("/usr/bin/ssh", 10*time.Minute, 0)
	for i := range 3 {
		if ans := a.Ask(context.Background(), q); ans.Outcome != OutcomeNo {
			t.Fatalf("deny %d: %+v", i, ans)
		}
	}
	if ans := a.Ask(context.Background(), q); ans.Outcome != OutcomeCooldown {
		t.Errorf("after three denies: %+v, want cooldown", ans)
	}
}

func TestProgramLabel(t *testing.T) {
	for _, tt := range []struct {
		exe  string
		d    time.Duration
		want string
	}{
		{"/usr/bin/ssh-keygen", 10 * time.Minute, "Allow ssh-keygen for 10 minutes"},
		{"/usr/bin/git", time.Minute, "Allow git for 1 minute"},
		{"/usr/bin/ssh", 2 * time.Hour, "Allow ssh for 2 hours"},
		{"/usr/bin/ssh", time.Hour, "Allow ssh for 1 hour"},
		{"/usr/bin/ssh", 90 * time.Minute, "Allow ssh for 90 minutes"},
		{"/usr/bin/ssh", 45 * time.Second, "Allow ssh for 45 seconds"},
		{"/usr/bin/ssh", 90 * time.Second, "Allow ssh for 1m30s"},
		{"/opt/my tool/run me", 10 * time.Minute, `Allow "run me" for 10 minutes`},
		{"/tmp/a\nb", 10 * time.Minute, `Allow "a\nb" for 10 minutes`},
		{"/tmp/" + strings.Repeat("x", 60), 10 * time.Minute, `Allow "` + strings.Repeat("x", 37) + `…" for 10 minutes`},
		{"", 10 * time.Minute, "Allow this program for 10 minutes"},
	} {
		if got := ProgramLabel(tt.exe, tt.d); got != tt.want {
			t.Errorf("ProgramLabel(%q, %v) = %q, want %q", tt.exe, tt.d, got, tt.want)
		}
	}
}

// The osascript dialog (macOS only) gets the text and label as arguments,
// never as script source, and only its exact answers allow.
func TestOSAScriptChoice(t *testing.T) {
	c := Choices{Text: "yes/no", ChoiceText: `Allow "x"?` + "\nend tell", ProgramLabel: `Allow "git" for 10 minutes`}
	args := osascriptChoiceArgs(c)
	want := []string{"-e", "on run argv",
		"-e", `display dialog (item 1 of argv) with title "safe-agent: allow key use?" buttons {"Deny", "Allow once", (item 2 of argv)} default button "Deny" cancel button "Deny" with icon caution`,
		"-e", "end run", c.ChoiceText, c.ProgramLabel}
	if strings.Join(args, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("osascript args:\n%q\nwant\n%q", args, want)
	}
	for _, tt := range []struct {
		exit int
		out  string
		want Choice
	}{
		{0, "button returned:Allow once\n", ChoiceOnce},
		{0, `button returned:Allow "git" for 10 minutes` + "\n", ChoiceProgram},
		{0, "button returned:Deny\n", ChoiceDeny},
		{1, "", ChoiceDeny}, // Escape: the cancel button
		{1, "button returned:Allow once\n", ChoiceDeny},
		{0, "button returned:Allow\n", ChoiceDeny},
		{0, "", ChoiceDeny},
	} {
		if got := osascriptChoice(run{exit: tt.exit, out: []byte(tt.out)}, c); got != tt.want {
			t.Errorf("exit %d, output %q: %v, want %v", tt.exit, tt.out, got, tt.want)
		}
	}
}
