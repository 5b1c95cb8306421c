package main

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/termtext"
)

// The columns of `safe-agent audit`, in the order they are printed.
const (
	colSeq = iota
	colTime
	colDecision
	colKey
	colPurpose
	colPath
	colProcess
	colRule
	numCols
)

var auditColumns = [numCols]string{"SEQ", "TIME", "DECISION", "KEY", "PURPOSE", "PATH", "PROCESS", "RULE / DETAIL"}

// auditMinWidths is how narrow a column may be cut before it is dropped
// instead; SEQ and TIME are never cut (0: their natural width).
var auditMinWidths = [numCols]int{0, 0, 8, 12, 10, 14, 18, 16}

// auditOptional are the columns that leave first when a terminal is too
// narrow for all of them, in that order: they stay only with room to be
// read (auditComfortWidths). auditEssential leave next, in that order,
// only when even their minimum widths do not fit. SEQ (for `audit show`),
// TIME and DECISION always stay.
var (
	auditOptional      = []int{colProcess, colPurpose}
	auditEssential     = []int{colRule, colPath, colKey}
	auditComfortWidths = [numCols]int{colPurpose: 16, colProcess: 24}
	// auditSinks take the room left once every column has its usual width.
	auditSinks = []int{colRule, colPath, colPurpose, colProcess, colKey, colDecision}
	// clientText are the columns whose text a client chose: a user name,
	// host names, process names, and reasons quoting them.
	clientText = [numCols]bool{colPurpose: true, colPath: true, colProcess: true, colRule: true}
)

// auditTypicalWidths are the widths --follow plans for: rows that arrive
// later are cut to the layout of the first batch, which may be short or
// empty.
var auditTypicalWidths = [numCols]int{6, 19, 26, 24, 20, 40, 30, 60}

const columnGap = 2

// Time formats: a terminal narrower than narrowTerminal gets the short one
// (--long and `audit show` give the full time).
const (
	longTimeLayout  = "2006-01-02 15:04:05"
	shortTimeLayout = "Jan _2 15:04:05"
	narrowTerminal  = 100
)

// auditTable formats records in columns. The layout comes from the first
// batch so that rows printed later by --follow line up with it.
type auditTable struct {
	loc        *time.Location
	timeLayout string
	style      outStyle
	// widths of the columns; 0 for a column left out to fit.
	widths [numCols]int
	// hidden lists the columns left out; cut is set once a cell has been
	// shortened. Both are for the hint that points to --long.
	hidden []string
	cut    bool
}

// newAuditTable lays out recs at their natural widths, without colour.
func newAuditTable(recs []audit.Record, loc *time.Location) *auditTable {
	return newStyledAuditTable(recs, loc, outStyle{}, false)
}

// newStyledAuditTable lays out recs for style: at their natural widths
// when the output is not cut (style.width 0), else fitted to style.width;
// with follow, room is planned for rows that come later.
func newStyledAuditTable(recs []audit.Record, loc *time.Location, style outStyle, follow bool) *auditTable {
	t := &auditTable{loc: loc, style: style, timeLayout: longTimeLayout}
	if style.width > 0 && style.width < narrowTerminal {
		// Four columns for the rule rather than for the year.
		t.timeLayout = shortTimeLayout
	}
	var widest [numCols]int
	for i, h := range auditColumns {
		widest[i] = width(h)
	}
	for _, r := range recs {
		for i, c := range t.cells(r) {
			widest[i] = max(widest[i], width(c))
		}
	}
	if style.width <= 0 {
		t.widths = widest
		return t
	}
	if follow {
		for i := range widest {
			widest[i] = max(widest[i], auditTypicalWidths[i])
		}
	}
	// usual is what a column may claim before the room left is shared
	// out: a column of client-chosen text claims at most a third of the
	// line, so that one odd record (a hostile 300-character user name, a
	// process tree twenty deep) does not take the room of every other.
	usual := widest
	for i := range usual {
		if clientText[i] {
			usual[i] = min(usual[i], max(auditMinWidths[i], style.width/3))
		}
	}
	t.widths = fitColumns(usual, widest, style.width)
	for i, w := range t.widths {
		if w == 0 {
			t.hidden = append(t.hidden, auditColumns[i])
		}
	}
	return t
}

// fitColumns chooses widths that fill at most total columns: it drops
// columns until the rest fit (auditOptional, auditEssential), then shares
// what is left so that the narrowest columns grow first, none beyond its
// usual width; what is left after that goes to the columns of free text
// (auditSinks), up to their widest cell.
func fitColumns(natural, widest [numCols]int, total int) [numCols]int {
	floor := func(i int, widths [numCols]int) int {
		if widths[i] == 0 {
			return natural[i]
		}
		return min(natural[i], widths[i])
	}
	var visible [numCols]bool
	for i := range visible {
		visible[i] = true
	}
	// need is the width of the visible columns at their floors; optional
	// columns at their comfortable width while comfortable is true.
	need := func(comfortable bool) int {
		n, cols := 0, 0
		for i, v := range visible {
			if !v {
				continue
			}
			f := floor(i, auditMinWidths)
			if comfortable && auditComfortWidths[i] > 0 {
				f = floor(i, auditComfortWidths)
			}
			n += f
			cols++
		}
		return n + columnGap*(cols-1)
	}
	for _, d := range auditOptional {
		if need(true) <= total {
			break
		}
		visible[d] = false
	}
	for _, d := range auditEssential {
		if need(false) <= total {
			break
		}
		visible[d] = false
	}
	var w [numCols]int
	for i, v := range visible {
		if v {
			w[i] = floor(i, auditMinWidths)
		}
	}
	left := total - need(false)
	for ; left > 0; left-- {
		grow := -1
		for i, v := range visible {
			if v && w[i] < natural[i] && (grow < 0 || w[i] < w[grow]) {
				grow = i
			}
		}
		if grow < 0 {
			break
		}
		w[grow]++
	}
	for _, i := range auditSinks {
		if visible[i] {
			more := min(left, max(widest[i]-w[i], 0))
			w[i] += more
			left -= more
		}
	}
	return w
}

func (t *auditTable) header() string { return t.line(auditColumns[:], nil) }

func (t *auditTable) row(r audit.Record) string { return t.line(t.cells(r), &r) }

// line joins the visible cells, each cut to its column and padded; the
// last one is not padded. r is nil for the header.
func (t *auditTable) line(cells []string, r *audit.Record) string {
	last := 0
	for i, w := range t.widths {
		if w > 0 {
			last = i
		}
	}
	var b strings.Builder
	for i, c := range cells {
		w := t.widths[i]
		if w == 0 {
			continue
		}
		// SEQ and TIME are never cut: a cut number names another record.
		if t.style.width > 0 && auditMinWidths[i] > 0 {
			if cc := cutCell(i, c, w); cc != c {
				c, t.cut = cc, true
			}
		}
		pad := max(w-utf8.RuneCountInString(c), 0) + columnGap
		if i == colDecision && r != nil {
			c = paintDecision(t.style.color, c, *r)
		}
		b.WriteString(c)
		if i == last {
			break
		}
		// A row printed by --follow may be wider than the first batch
		// made the column when nothing is cut: it then pushes the next
		// column right.
		b.WriteString(strings.Repeat(" ", pad))
	}
	return strings.TrimRight(b.String(), " ") + "\n"
}

// cells are the columns of one row. Most of a record came from a client
// (user, namespace, key comment, host names, process names, and reasons
// that quote them), so every cell is escaped: a user name such as
// "\x1b[2K\rFORGED allowed" must not erase or fake a row. Cutting happens
// after escaping, so a cut never splits a control character open.
func (t *auditTable) cells(r audit.Record) []string {
	cells := []string{
		strconv.FormatUint(r.Seq, 10),
		r.Time.In(t.loc).Format(t.timeLayout),
		auditDecision(r),
		auditKey(r.Key),
		auditPurpose(r),
		auditPath(r),
		auditProcess(r.Client),
		auditRule(r),
	}
	for i, c := range cells {
		cells[i] = termtext.Escape(c)
	}
	return cells
}

// hint says what the table left out, or "" when nothing was.
func (t *auditTable) hint() string {
	if len(t.hidden) == 0 && !t.cut {
		return ""
	}
	s := "Cut to fit " + strconv.Itoa(t.style.width) + " columns"
	if len(t.hidden) > 0 {
		s += " (not shown: " + strings.Join(t.hidden, ", ") + ")"
	}
	return s + ": `safe-agent audit --long` shows every field, `safe-agent audit show SEQ` one record.\n"
}

// paintDecision colours the decision word (allowed green, denied red) and
// what says a person was asked (yellow). cell is already cut and escaped;
// the colours are ours, added after.
func paintDecision(on bool, cell string, r audit.Record) string {
	if !on {
		return cell
	}
	word, rest := cell, ""
	if i := strings.IndexByte(cell, ' '); i >= 0 {
		word, rest = cell[:i], cell[i:]
	}
	switch strings.TrimSuffix(word, "…") {
	case audit.DecisionAllowed:
		word = paint(true, ansiGreen, word)
	case audit.DecisionDenied:
		word = paint(true, ansiRed, word)
	}
	if r.Prompt != nil {
		rest = paint(true, ansiYellow, rest)
	}
	return word + rest
}

// cutCell shortens a cell to w columns where it reads best: a process
// chain at a whole " ← " element, a path keeping its destination, other
// text at its end.
func cutCell(col int, s string, w int) string {
	switch col {
	case colDecision:
		return cutDecision(s, w)
	case colProcess:
		return cutChain(s, w)
	case colPath:
		return cutPath(s, w)
	}
	return cut(s, w)
}

func width(s string) int { return utf8.RuneCountInString(s) }

// cut shortens s to n columns, ending in "…" (without a space before it).
func cut(s string, n int) string {
	if width(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	return strings.TrimRight(string([]rune(s)[:n-1]), " ") + "…"
}

const (
	chainSep = " ← "
	pathSep  = " → "
)

// cutChain shortens a process chain, "ssh (1234) ← bash (999) ← sshd (1)",
// by whole elements from its far end: "ssh (1234) ← …". When even the
// first element does not fit, its name is cut and its pid kept:
// "longnam… (1234) ← …". A pid is never cut.
func cutChain(s string, w int) string {
	if width(s) <= w {
		return s
	}
	parts := strings.Split(s, chainSep)
	more := chainSep + "…"
	for j := len(parts) - 1; j >= 1; j-- {
		if c := strings.Join(parts[:j], chainSep) + more; width(c) <= w {
			return c
		}
	}
	first := parts[0]
	name, pid := first, ""
	if i := strings.LastIndex(first, " ("); i > 0 && strings.HasSuffix(first, ")") {
		name, pid = first[:i], first[i:]
	}
	// shortName is the first element with its name cut to fit beside
	// tail, pid kept; "" when there is not room for a letter of the name.
	shortName := func(tail string) string {
		if room := w - width(pid) - width(tail); room >= 2 {
			return cut(name, room) + pid + tail
		}
		return ""
	}
	if len(parts) > 1 {
		if c := shortName(more); c != "" {
			return c
		}
		if c := first + "…"; width(c) <= w {
			return c
		}
	}
	if c := shortName(""); c != "" && width(c) <= w {
		return c
	}
	return cut(s, w)
}

// cutPath shortens "here → a (forwarded) → b (forwarded) → dest" by
// leaving out hops before the destination: "here → a (forwarded) → … →
// dest", then "… → dest".
func cutPath(s string, w int) string {
	if width(s) <= w {
		return s
	}
	parts := strings.Split(s, pathSep)
	if len(parts) >= 2 {
		last := parts[len(parts)-1]
		for j := len(parts) - 2; j >= 1; j-- {
			if c := strings.Join(parts[:j], pathSep) + pathSep + "…" + pathSep + last; width(c) <= w {
				return c
			}
		}
		if c := "…" + pathSep + last; width(c) <= w {
			return c
		}
	}
	return cut(s, w)
}

// cutDecision shortens "allowed (asked: yes, 2.3s)" to "allowed (asked:
// yes)", then "allowed (asked)", then "allowed…": the decision stays whole
// as long as it can.
func cutDecision(s string, w int) string {
	if width(s) <= w {
		return s
	}
	word, rest, ok := strings.Cut(s, " (")
	if ok {
		detail := strings.TrimSuffix(rest, ")")
		if i := strings.LastIndex(detail, ", "); i >= 0 {
			if c := word + " (" + detail[:i] + ")"; width(c) <= w {
				return c
			}
		}
		if i := strings.Index(detail, ":"); i >= 0 {
			if c := word + " (" + detail[:i] + ")"; width(c) <= w {
				return c
			}
		}
		if width(word) < w {
			return word + "…"
		}
	}
	return cut(s, w)
}
