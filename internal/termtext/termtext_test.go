package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "deploy@db.internal", "deploy@db.internal"},
		{"empty", "", ""},
		{"UTF-8 kept", "José → 日本 ✓ €", "José → 日本 ✓ €"},
		{"real U+FFFD kept", "a\ufffdb", "a\ufffdb"},
		{"backslash kept", `C:\Users\x1b`, `C:\Users\x1b`},
		{"erase line and return", "\x1b[2K\rFORGED allowed", `\x1b[2K\rFORGED allowed`},
		{"newlines and tab", "root\n\nPath: here\tx", `root\n\nPath: here\tx`},
		{"NUL, BEL, BS, DEL", "a\x00b\x07c\x08d\x7f", `a\x00b\x07c\x08d\x7f`},
		{"C1 CSI and NEL", "a\u009b31mb\u0085c", `a\u009b31mb\u0085c`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"C1 byte alone is invalid UTF-8", "a\x9bb", `a\x9bb`},
		{"RLO", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"bidi embeddings and isolates", "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069", `\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069`},
		{"LRM RLM ALM", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"zero width", "git\u200bhub\u200c\u200d\u2060\ufeff", `git\u200bhub\u200c\u200d\u2060\ufeff`},
		{"soft hyphen", "ro\u00adot", `ro\u00adot`},
		{"line and paragraph separators", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"Hangul filler", "a\u3164b", `a\u3164b`},
		{"private use", "a\ue000b", `a\ue000b`},
		{"tag characters", "a\U000e0041b", `a\U000e0041b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Escape(tt.in)
			if got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := Escape(got); again != got {
				t.Errorf("Escape is not idempotent: %q then %q", got, again)
			}
		})
	}
}

func TestEscapeLines(t *testing.T) {
	in := "policy.toml:3:1: bad key \"a\x1b[2Kb\"\npolicy.toml:4:1: x\ry"
	want := "policy.toml:3:1: bad key \"a\\x1b[2Kb\"\npolicy.toml:4:1: x\\ry"
	if got := EscapeLines(in); got != want {
		t.Errorf("EscapeLines = %q, want %q", got, want)
	}
	if got := EscapeLines("one\ntwo"); got != "one\ntwo" {
		t.Errorf("EscapeLines changed plain lines: %q", got)
	}
}

// An unchanged string is returned as is, without copying.
func TestEscapeNoAllocWhenSafe(t *testing.T) {
	s := strings.Repeat("deploy → 日本 ", 20)
	if n := testing.AllocsPerRun(100, func() { _ = Escape(s) }); n != 0 {
		t.Errorf("Escape of a safe string allocates %v times", n)
	}
}

// checkSafe fails when s holds anything a terminal acts on or does not
// show: bytes below 0x20, DEL, invalid UTF-8, C1 controls, bidi controls
// and other invisible format characters.
func checkSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("not valid UTF-8: %q", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("byte %#x at %d in %q", c, i, s)
		}
	}
	for _, r := range s {
		switch {
		case r >= 0x80 && r <= 0x9f:
			t.Fatalf("C1 control %U in %q", r, s)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			t.Fatalf("bidi control %U in %q", r, s)
		case Unsafe(r):
			t.Fatalf("unsafe %U in %q", r, s)
		}
	}
}

// FuzzEscape: whatever the input, the output is printable UTF-8 with no
// control, bidi or invisible format character; escaping it again changes
// nothing; safe input comes back unchanged; and only unsafe characters
// are touched (the output without escapes has the input's safe runes in
// order).
func FuzzEscape(f *testing.F) {
	for _, s := range []string{
		"", "deploy", "José 日本 →", "\x1b[2K\rFORGED allowed", "root\n\nPath: here → github.com",
		"\x00\x07\x08\t\x7f", "\u009b\u0085", "\xff\xfe\xc3", "evil\u202etxt\u2066\u2069",
		"\u200b\u200d\ufeff\u00ad", "\u2028\u2029", "\U000e0041\ue000\u3164", `\x1b\u202e`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		checkSafe(t, got)
		if again := Escape(got); again != got {
			t.Fatalf("not idempotent: %q → %q → %q", s, got, again)
		}
		if utf8.ValidString(s) {
			var kept strings.Builder
			for _, r := range s {
				if !Unsafe(r) {
					kept.WriteRune(r)
				}
			}
			if kept.Len() == len(s) && got != s {
				t.Fatalf("safe input changed: %q → %q", s, got)
			}
			if !containsInOrder(got, kept.String()) {
				t.Fatalf("safe characters of %q lost in %q", s, got)
			}
		}
		lines := EscapeLines(s)
		checkSafe(t, strings.ReplaceAll(lines, "\n", ""))
		if strings.Count(lines, "\n") != strings.Count(s, "\n") {
			t.Fatalf("EscapeLines(%q) = %q changed the number of lines", s, lines)
		}
	})
}

// containsInOrder reports whether the runes of sub appear in s in order.
func containsInOrder(s, sub string) bool {
	for _, r := range sub {
		i := strings.IndexRune(s, r)
		if i < 0 {
			return false
		}
		s = s[i+utf8.RuneLen(r):]
	}
	return true
}
