package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// manDemoTree is a root and one command whose help text has everything roff
// would misread: a backslash, lines starting with "." and "'", an indented
// example, hyphens.
func manDemoTree() (root, demo *cobra.Command) {
	root = &cobra.Command{Use: "safe-agent", Short: "An agent"}
	root.PersistentFlags().String("config", "", "config file")
	demo = &cobra.Command{
		Use:   "demo KEY",
		Short: `Show a key's \n escapes`,
		Long: `Reads keys from C:\keys and prints them with -n.
.starts with a dot
'quoted' at the start of a line

  safe-agent demo --socket /tmp/a.sock work
  .not a request either

Last paragraph.`,
		Example: `  safe-agent demo work
.in the example too`,
		Run: func(*cobra.Command, []string) {},
	}
	demo.Flags().StringP("socket", "s", "/run/demo-agent.sock", `agent socket (a \ in usage)`)
	demo.Flags().BoolP("long", "l", false, "every field")
	demo.Flags().Int("lines", 50, "how many")
	demo.Flags().String("secret", "", "not shown")
	demo.Flags().MarkHidden("secret")
	root.AddCommand(demo)
	return root, demo
}

const manDemoPage = `.TH "SAFE-AGENT-DEMO" "1" "Mar 2025" "safe-agent" "safe-agent manual"
.nh
.ad l
.SH NAME
\%safe-agent-demo \- Show a key's \en escapes
.SH SYNOPSIS
\fBsafe\-agent demo KEY [flags]\fP
.SH DESCRIPTION
Reads keys from C:\ekeys and prints them with \-n.
\&.starts with a dot
\&'quoted' at the start of a line
.PP
.nf
  safe\-agent demo \-\-socket /tmp/a.sock work
  .not a request either
.fi
.PP
Last paragraph.
.SH OPTIONS
.TP
\fB-h\fP, \fB--help\fP[=false]
help for demo
.TP
\fB--lines\fP=50
how many
.TP
\fB-l\fP, \fB--long\fP[=false]
every field
.TP
\fB-s\fP, \fB--socket\fP="/run/demo\-agent.sock"
agent socket (a \e in usage)
.SH OPTIONS INHERITED FROM PARENT COMMANDS
.TP
\fB--config\fP=""
config file
.SH EXAMPLE
.EX
  safe\-agent demo work
\&.in the example too
.EE
.SH SEE ALSO
\fB\%safe-agent(1)\fP
`

func TestManPageRoff(t *testing.T) {
	_, demo := manDemoTree()
	if got := renderManPage(demo, "Mar 2025"); got != manDemoPage {
		t.Errorf("page:\n%s\nwant:\n%s", got, manDemoPage)
	}
}

func TestManPageRendered(t *testing.T) {
	man, err := exec.LookPath("man")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("man not found: install the Debian package man-db")
		}
		t.Skip("man not found: install the Debian package man-db (apt-get install man-db)")
	}
	root, _ := manDemoTree()
	dir := t.TempDir()
	if n, err := writeManTree(root, dir, "Mar 2025"); err != nil || n != 2 {
		t.Fatalf("writeManTree: %d pages, %v", n, err)
	}
	cmd := exec.Command(man, "--warnings", "-l", filepath.Join(dir, "safe-agent-demo.1"))
	cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat", "LANG=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l: %v\n%s", err, stderr.String())
	}
	rendered := string(out)
	for _, want := range []string{
		"SAFE-AGENT-DEMO(1)",
		"safe-agent-demo - Show a key's \\n escapes",
		"safe-agent demo KEY [flags]",
		"Reads keys from C:\\keys and prints them with -n.",
		// Filled into one line: neither was read as a request.
		"-n.  .starts with a dot 'quoted' at the start",
		"\n         safe-agent demo --socket /tmp/a.sock work\n         .not a request either\n",
		"-s, --socket=\"/run/demo-agent.sock\"",
		"agent socket (a \\ in usage)",
		"--lines=50",
		"--config=\"\"",
		"\n         safe-agent demo work\n       .in the example too\n",
		"safe-agent(1)",
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, rendered)
		}
	}
	if strings.Contains(rendered, "secret") {
		t.Errorf("rendered page shows the hidden flag:\n%s", rendered)
	}
	rootPage, err := os.ReadFile(filepath.Join(dir, "safe-agent.1"))
	if err != nil || !strings.Contains(string(rootPage), ".SH SEE ALSO\n\\fB\\%safe-agent-demo(1)\\fP\n") {
		t.Errorf("safe-agent.1 does not point to safe-agent-demo(1): %v\n%s", err, rootPage)
	}
}

func TestManDate(t *testing.T) {
	now := time.Date(2026, 7, 4, 12, 0, 0, 0, time.UTC)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return v
			}
			return ""
		}
	}
	if d, err := manDate(env(""), now); d != "Jul 2026" || err != nil {
		t.Errorf("without SOURCE_DATE_EPOCH: %q, %v", d, err)
	}
	if d, err := manDate(env("1740830400"), now); d != "Mar 2025" || err != nil {
		t.Errorf("SOURCE_DATE_EPOCH=1740830400: %q, %v", d, err)
	}
	if _, err := manDate(env("yesterday"), now); err == nil || !strings.Contains(err.Error(), `invalid SOURCE_DATE_EPOCH "yesterday"`) {
		t.Errorf("SOURCE_DATE_EPOCH=yesterday: %v", err)
	}
}
