package main

import (
	"io"
	"strconv"

	"golang.org/x/term"
)

// outStyle is how output meant for people is laid out on the writer it
// goes to.
type outStyle struct {
	// width is the number of columns to fit; 0 means do not cut, as when
	// the output goes to a pipe or a file: a program reading it (grep, a
	// pager, a file kept for later) wants whole values.
	width int
	// color is true when decisions may be coloured: a terminal, NO_COLOR
	// unset (https://no-color.org) and TERM not "dumb".
	color bool
}

// fallbackWidth is used for a terminal that does not report its size
// (a serial console) when $COLUMNS does not say either.
const fallbackWidth = 80

// detectStyle looks at w: a terminal gets its width (from the terminal,
// else $COLUMNS, else 80) and colour; anything else gets neither.
func detectStyle(w io.Writer, getenv func(string) string) outStyle {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return outStyle{}
	}
	s := outStyle{width: fallbackWidth, color: getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
		s.width = cols
	} else if n, err := strconv.Atoi(getenv("COLUMNS")); err == nil && n > 0 {
		s.width = n
	}
	return s
}

// ANSI colours for decisions.
const (
	ansiGreen  = "\x1b[32m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiReset  = "\x1b[0m"
)

func paint(on bool, color, s string) string {
	if !on || s == "" {
		return s
	}
	return color + s + ansiReset
}
