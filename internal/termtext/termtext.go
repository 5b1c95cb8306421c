// Package termtext makes text that came from someone else safe to print
// on a terminal or show in a one-line field.
//
// A remote user name, a key comment or a process name is chosen by
// whoever sent it. Printed raw, "\x1b[2K\r" erases the line a terminal
// just showed, "\n" starts a row of its own, and U+202E (right-to-left
// override) reverses what follows; each can forge an "allowed" row in
// front of a denied one. Escape renders all of those visibly instead.
package termtext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every character that a terminal would act on, or
// that would not show, replaced by a visible escape:
//
//   - newline, carriage return and tab become \n, \r and \t;
//   - other C0 controls and DEL become \x00 … \x1f, \x7f;
//   - bytes that are not UTF-8 become \xNN;
//   - C1 controls (U+0080–U+009F), format characters (bidi overrides and
//     isolates U+202A–U+202E, U+2066–U+2069, zero-width spaces and
//     joiners, soft hyphen, BOM), line and paragraph separators, private
//     use characters and other default-ignorable code points (Hangul
//     fillers, U+FFF0…) become \u0085, \u202e, \U000e0001.
//
// Everything else, ordinary UTF-8 included (é, 日本, →), is kept. The
// result is printable and Escape(Escape(s)) == Escape(s); it is a display
// form, not an encoding: a literal backslash is kept as it is, so "\x1b"
// typed by someone looks like an escaped ESC. Use JSON for exact values.
func Escape(s string) string {
	i := firstUnsafe(s)
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			writeByte(&b, s[i])
		} else if Unsafe(r) {
			writeRune(&b, r)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// EscapeLines is Escape for text that is meant to have several lines (an
// error listing one problem a line): each line is escaped and the line
// breaks ("\n") are kept. Use it only for text whose line breaks the
// program chose; a client-supplied string inside may still add lines.
func EscapeLines(s string) string {
	if firstUnsafe(s) == len(s) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l)
	}
	return strings.Join(lines, "\n")
}

// Unsafe reports whether Escape replaces r: a control character, or one
// that is invisible or changes how the text around it is shown.
func Unsafe(r rune) bool {
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7f
	}
	return unicode.IsControl(r) ||
		unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs, unicode.Other_Default_Ignorable_Code_Point)
}

// firstUnsafe is the index of the first byte Escape changes, or len(s).
func firstUnsafe(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || Unsafe(r) {
			return i
		}
		i += size
	}
	return len(s)
}

const hexDigits = "0123456789abcdef"

func writeByte(b *strings.Builder, c byte) {
	switch c {
	case '\n':
		b.WriteString(`\n`)
	case '\r':
		b.WriteString(`\r`)
	case '\t':
		b.WriteString(`\t`)
	default:
		b.WriteString(`\x`)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
}

func writeRune(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf {
		writeByte(b, byte(r))
		return
	}
	digits := 4
	if r > 0xffff {
		b.WriteString(`\U`)
		digits = 8
	} else {
		b.WriteString(`\u`)
	}
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		b.WriteByte(hexDigits[(r>>shift)&0xf])
	}
}
