package notify

import (
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/safe-agent/safe-agent/policy"
)

const testFP = "SHA256:7pP8vXnP0uSHxP1gR1DxK1ABCDefghIJKLmnopqrstu"

func TestPromptText(t *testing.T) {
	tests := []struct {
		name string
		p    Prompt
		want string
	}{
		{
			name: "forwarded login, remembered",
			p: Prompt{
				KeyComment: "work", KeyFingerprint: testFP,
				Purpose:  PurposeLogin("deploy", "db.internal"),
				Path:     hopsPath("jump.example (forwarded)", "db.internal"),
				Process:  "ssh (1234) ← git (1200) ← zsh (1000)",
				Remember: 5 * time.Minute,
				Reason:   "forwarded use of this key needs confirmation",
			},
			want: `Allow use of key "work" (` + testFP + `)?

To: log in as deploy on db.internal
Path: here → jump.example (forwarded) → db.internal
By: ssh (1234) ← git (1200) ← zsh (1000)
Asked because forwarded use of this key needs confirmation

A yes is remembered for 5m for this key, path and program.`,
		},
		{
			name: "local git signature, nothing remembered, no reason",
			p: Prompt{
				KeyComment: "laptop", KeyFingerprint: testFP,
				Purpose: PurposeSSHSIG("git"),
				Path:    hopsPath(),
				Process: "ssh-keygen (77) ← git (76)",
			},
			want: `Allow use of key "laptop" (` + testFP + `)?

To: sign a git commit or tag
Path: here
By: ssh-keygen (77) ← git (76)

Nothing is remembered.`,
		},
		{
			name: "everything unknown",
			p:    Prompt{},
			want: `Allow use of key (unknown key)?

To: sign data of unknown kind
Path: here
By: unknown process

Nothing is remembered.`,
		},
		{
			name: "no comment, 1h30m",
			p:    Prompt{KeyFingerprint: testFP, Purpose: PurposeOpaque(), Remember: 90 * time.Minute},
			want: `Allow use of key ` + testFP + `?

To: sign data of unknown kind
Path: here
By: unknown process

A yes is remembered for 1h30m for this key, path and program.`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Text(); got != tt.want {
				t.Errorf("Text():\n%s\n--- want:\n%s", got, tt.want)
			}
		})
	}
}

// Fields come from other people: a key comment, a remote user name, a
// process name. None of them may add a line or pass for another field.
func TestPromptTextEscapesHostileFields(t *testing.T) {
	p := Prompt{
		KeyComment:     "work\" (SHA256:fake)",
		KeyFingerprint: testFP,
		Purpose:        PurposeLogin("root\nPath: here", "db.internal"),
		Path:           hopsPath("evil\u202etxt.exe", "a\x00b"),
		Process:        "ssh\n\nTo: sign a git commit or tag",
		Reason:         "x\u2028y",
	}
	got := p.Text()
	wantLines := []string{
		`Allow use of key "work\" (SHA256:fake)" (` + testFP + `)?`,
		``,
		`To: log in as "root\nPath: here" on db.internal`,
		`Path: here → evil\u202etxt.exe → a\x00b`,
		`By: ssh\n\nTo: sign a git commit or tag`,
		`Asked because x\u2028y`,
		``,
		`Nothing is remembered.`,
	}
	if want := strings.Join(wantLines, "\n"); got != want {
		t.Errorf("Text():\n%s\n--- want:\n%s", got, want)
	}
}

func TestPromptPathTooLong(t *testing.T) {
	var hops []string
	for i := range 19 {
		hops = append(hops, "h"+string(rune('b'+i)))
	}
	got := Prompt{Path: hopsPath(hops...)}.path()
	want := "here → hb → hc → hd → he → hf → (9 more) → hp → hq → hr → hs → ht"
	if got != want {
		t.Errorf("path() = %q, want %q", got, want)
	}
	long := Prompt{Process: strings.Repeat("x", 1000)}.process()
	if n := utf8.RuneCountInString(long); n != maxProcess+1 || !strings.HasSuffix(long, "…") {
		t.Errorf("process() of 1000 x = %d runes (want %d ending in …)", n, maxProcess+1)
	}
}

func TestPurposes(t *testing.T) {
	tests := []struct{ got, want string }{
		{PurposeLogin("deploy", "db.internal"), "log in as deploy on db.internal"},
		{PurposeLogin("git", "[gitlab.example]:2222"), "log in as git on [gitlab.example]:2222"},
		{PurposeLogin("root on github.com", "evil.example"), `log in as "root on github.com" on evil.example`},
		{PurposeLogin("", "db.internal"), "log in on db.internal"},
		{PurposeLogin("deploy", ""), "log in as deploy"},
		{PurposeLogin("", ""), "log in"},
		{PurposeLoginUnknownHost("root"), "log in as root on an unknown host"},
		{PurposeLoginUnknownHost("a b"), `log in as "a b" on an unknown host`},
		{PurposeSSHSIG("git"), "sign a git commit or tag"},
		{PurposeSSHSIG("file"), "sign a file"},
		{PurposeSSHSIG("backup@example.com"), `sign data in namespace "backup@example.com"`},
		{PurposeSSHSIG("a\nb"), `sign data in namespace "a\nb"`},
		{PurposeOpaque(), "sign data of unknown kind"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute:                      "5m",
		time.Hour:                            "1h",
		90 * time.Minute:                     "1h30m",
		45 * time.Second:                     "45s",
		90 * time.Second:                     "1m30s",
		time.Hour + 30*time.Second:           "1h0m30s",
		300 * time.Millisecond:               "under a second",
		2*time.Minute + 400*time.Millisecond: "2m",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestNotice(t *testing.T) {
	p := Prompt{KeyComment: "work", KeyFingerprint: testFP, Purpose: PurposeLogin("deploy", "db.internal"),
		Path: hopsPath("jump.example (forwarded)", "db.internal"), Process: "ssh (1234)"}
	title, body := Notice(p, false, "the prompt went unanswered")
	if want := `safe-agent refused key "work"`; title != want {
		t.Errorf("title = %q, want %q", title, want)
	}
	want := `Key: "work" (` + testFP + `)
To: log in as deploy on db.internal
Path: here → jump.example (forwarded) → db.internal
By: ssh (1234)
Why: the prompt went unanswered`
	if body != want {
		t.Errorf("body:\n%s\n--- want:\n%s", body, want)
	}
	title, _ = Notice(Prompt{KeyFingerprint: testFP}, true, "")
	if want := `safe-agent: key "` + testFP + `" used`; title != want {
		t.Errorf("title = %q, want %q", title, want)
	}
}

// FuzzPromptText: whatever the fields hold, the text keeps its shape (the
// same labelled lines), is valid UTF-8, and has no control or invisible
// formatting characters besides its own line breaks.
func FuzzPromptText(f *testing.F) {
	f.Add("work", testFP, "log in as deploy on db.internal", "here\x00jump (forwarded)", "ssh (1)", "why", int64(time.Minute))
	f.Add("a\nb", "\xff\xfe", "To: x\r\n", "\u202e\u200b", "\u2028\u2029", "\x1b[31m", int64(-1))
	f.Add("", "", "", "", "", "", int64(0))
	f.Fuzz(func(t *testing.T, comment, fp, purpose, path, process, reason string, remember int64) {
		p := Prompt{KeyComment: comment, KeyFingerprint: fp, Purpose: purpose, Process: process,
			Reason: reason, Remember: time.Duration(remember)}
		if path != "" {
			// The last part, when there are several, is the host a
			// login's bind claims: it is shown as a name too.
			hops := strings.Split(path, "\x00")
			p.Path = hopsPath(hops...)
			if n := len(hops); n > 1 {
				p.Path = hopsPath(hops[:n-1]...)
				p.Path.Tail, p.Path.BoundTo = policy.TailNotHostbound, hops[n-1]
			}
		}
		got := p.Text()
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		for _, r := range got {
			if r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs)) {
				t.Fatalf("unescaped %U in %q", r, got)
			}
		}
		lines := strings.Split(got, "\n")
		labels := []string{"Allow use of key ", "", "To: ", "Path: ", "By: "}
		if reason != "" {
			labels = append(labels, "Asked because ")
		}
		labels = append(labels, "", "")
		if len(lines) != len(labels) {
			t.Fatalf("%d lines, want %d: %q", len(lines), len(labels), got)
		}
		for i, l := range labels {
			if !strings.HasPrefix(lines[i], l) || (l == "" && i < len(lines)-1 && lines[i] != "") {
				t.Fatalf("line %d = %q, want prefix %q", i, lines[i], l)
			}
		}
		last := lines[len(lines)-1]
		if last != "Nothing is remembered." && !strings.HasPrefix(last, "A yes is remembered for ") {
			t.Fatalf("last line %q", last)
		}
	})
}

// A notice about a hostile request keeps its five labelled lines.
func TestNoticeEscapesHostileFields(t *testing.T) {
	p := Prompt{KeyComment: "work\nKey: other", KeyFingerprint: testFP,
		Purpose: PurposeLogin("x\n\nAllowed path: here → github.com", "db"),
		Path:    hopsPath("jump\r\nPath: here"), Process: "ssh\x1b[2K (1)"}
	_, body := Notice(p, false, "refused\nWhy: allowed")
	want := `Key: "work\nKey: other" (` + testFP + `)
To: log in as "x\n\nAllowed path: here → github.com" on db
Path: here → jump\r\nPath: here
By: ssh\x1b[2K (1)
Why: refused\nWhy: allowed`
	if body != want {
		t.Errorf("body:\n%s\n--- want:\n%s", body, want)
	}
}

// hopsPath is the path here → hops…, each hop written as prompts show it:
// "jump (forwarded)" is a forwarding hop named jump.
func hopsPath(hops ...string) policy.Path {
	var p policy.Path
	for _, h := range hops {
		name, fwd := strings.CutSuffix(h, " (forwarded)")
		p.Hops = append(p.Hops, policy.PathHop{Name: name, Forwarded: fwd})
	}
	return p
}
