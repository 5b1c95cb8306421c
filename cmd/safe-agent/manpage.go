package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The man pages are written here rather than by cobra/doc: that package
// converts through Markdown (go-md2man, blackfriday), about 450 KB of binary
// for one rarely used command, and it read Markdown into plain help text
// (`x` became bold). Help text is written verbatim, escaped for roff.

// manDate is the date of the pages' .TH line, formatted as cobra/doc did:
// that of SOURCE_DATE_EPOCH when set (reproducible packages), else now.
func manDate(getenv func(string) string, now time.Time) (string, error) {
	if epoch := getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return "", fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
		now = time.Unix(sec, 0).UTC()
	}
	return now.Format("Jan 2006"), nil
}

// manCommands lists c and its descendants that get a page: those --help
// lists, not help topics.
func manCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		if hasManPage(sub) {
			out = append(out, manCommands(sub)...)
		}
	}
	return out
}

// hasManPage: the commands --help lists get a page; help topics do not.
func hasManPage(c *cobra.Command) bool {
	return c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand()
}

// manPageName is the page's file name: safe-agent-audit-show.1.
func manPageName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
}

// writeManTree writes a page for every command of root's tree into dir
// and returns how many it wrote.
func writeManTree(root *cobra.Command, dir, date string) (int, error) {
	cmds := manCommands(root)
	for _, c := range cmds {
		path := filepath.Join(dir, manPageName(c))
		if err := os.WriteFile(path, []byte(renderManPage(c, date)), 0o644); err != nil {
			return 0, fmt.Errorf("write man page: %w", err)
		}
	}
	return len(cmds), nil
}

// renderManPage returns c's page in roff (man(7) macros).
func renderManPage(c *cobra.Command, date string) string {
	// --help is added when a command runs; the page is made without
	// running it, and --help lists it.
	c.InitDefaultHelpFlag()
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s %s %s %s\n", roffArg(strings.ToUpper(name)), roffArg("1"),
		roffArg(date), roffArg("safe-agent"), roffArg("safe-agent manual"))
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\n")
	b.WriteString(roffLine(`\%`+name+` \- `, c.Short) + "\n")
	b.WriteString(".SH SYNOPSIS\n")
	b.WriteString(`\fB` + roffEscape(c.UseLine()) + `\fP` + "\n")
	b.WriteString(".SH DESCRIPTION\n")
	description := c.Long
	if description == "" {
		description = c.Short
	}
	b.WriteString(roffParagraphs(description, ".PP"))
	writeManFlags(&b, "OPTIONS", c.NonInheritedFlags())
	writeManFlags(&b, "OPTIONS INHERITED FROM PARENT COMMANDS", c.InheritedFlags())
	if c.Example != "" {
		b.WriteString(".SH EXAMPLE\n.EX\n")
		b.WriteString(roffVerbatim(c.Example))
		b.WriteString(".EE\n")
	}
	if also := manSeeAlso(c); len(also) > 0 {
		b.WriteString(".SH SEE ALSO\n")
		b.WriteString(strings.Join(also, ", ") + "\n")
	}
	return b.String()
}

// writeManFlags writes a section listing flags as cobra/doc did:
// "-n, --lines=50" then the usage, indented; hidden and deprecated flags
// are left out, as --help leaves them out.
func writeManFlags(b *strings.Builder, title string, flags *pflag.FlagSet) {
	started := false
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		if !started {
			b.WriteString(".SH " + title + "\n")
			started = true
		}
		b.WriteString(".TP\n" + manFlagTag(f) + "\n")
		b.WriteString(roffParagraphs(f.Usage, ".IP"))
	})
}

// manFlagTag is `\fB-n\fP, \fB--lines\fP=50`. The dashes of the names stay
// plain "-": man-db renders them as ASCII, and tests look for them so.
func manFlagTag(f *pflag.Flag) string {
	tag := `\fB--` + roffBackslash(f.Name) + `\fP`
	if f.Shorthand != "" && f.ShorthandDeprecated == "" {
		tag = `\fB-` + roffBackslash(f.Shorthand) + `\fP, ` + tag
	}
	def := f.DefValue
	if f.Value.Type() == "string" {
		def = strconv.Quote(def)
	}
	if f.NoOptDefVal != "" {
		return tag + "[=" + roffEscape(def) + "]"
	}
	return tag + "=" + roffEscape(def)
}

// manSeeAlso names the parent's page and the children's, sorted.
func manSeeAlso(c *cobra.Command) []string {
	var also []string
	if c.HasParent() {
		also = append(also, manRef(c.Parent()))
	}
	children := slices.Clone(c.Commands())
	slices.SortFunc(children, func(x, y *cobra.Command) int { return strings.Compare(x.Name(), y.Name()) })
	for _, sub := range children {
		if hasManPage(sub) {
			also = append(also, manRef(sub))
		}
	}
	return also
}

// manRef is `\fB\%safe-agent-audit(1)\fP`; \% keeps a line from
// breaking at the name's hyphens.
func manRef(c *cobra.Command) string {
	return `\fB\%` + strings.ReplaceAll(c.CommandPath(), " ", "-") + `(1)\fP`
}

// roffParagraphs renders help text: a blank line starts a new paragraph
// (par: .PP, or .IP to keep a flag's indent), indented lines (examples,
// tables) are kept as they are (.nf), the rest is filled.
func roffParagraphs(text, par string) string {
	var b strings.Builder
	lines := strings.Split(strings.Trim(text, "\n"), "\n")
	verbatim, gap := false, false
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			gap = true
			continue
		}
		indented := line[0] == ' ' || line[0] == '\t'
		if verbatim && (!indented || gap) {
			b.WriteString(".fi\n")
			verbatim = false
		}
		if gap && b.Len() > 0 {
			b.WriteString(par + "\n")
		}
		gap = false
		if indented && !verbatim {
			b.WriteString(".nf\n")
			verbatim = true
		}
		b.WriteString(roffLine("", line) + "\n")
	}
	if verbatim {
		b.WriteString(".fi\n")
	}
	return b.String()
}

// roffVerbatim renders text line by line, blank lines included, for .EX.
func roffVerbatim(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.Trim(text, "\n"), "\n") {
		b.WriteString(roffLine("", line) + "\n")
	}
	return b.String()
}

// roffLine is one input line: prefix (already roff) then text, escaped, and
// guarded so that a text starting with "." or "'" is not read as a request.
func roffLine(prefix, text string) string {
	s := prefix + roffEscape(text)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffEscape makes text print as itself: a backslash is roff's escape
// character, and "-" is a hyphen where "\-" is the ASCII minus that options
// and commands need to be copied from the page.
func roffEscape(s string) string {
	return strings.ReplaceAll(roffBackslash(s), `-`, `\-`)
}

// roffBackslash escapes only backslashes, for names whose "-" stays plain.
func roffBackslash(s string) string {
	return strings.ReplaceAll(s, `\`, `\e`)
}

// roffArg quotes a macro argument (of .TH, whose title keeps its plain
// "-"); a '"' cannot appear in one.
func roffArg(s string) string {
	return `"` + strings.ReplaceAll(roffBackslash(s), `"`, `\(dq`) + `"`
}
