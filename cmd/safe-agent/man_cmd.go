package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// newManCmd writes a man page for every command, generated from the
// command tree, so the pages say what --help says and cannot fall behind.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages (safe-agent.1, safe-agent-add.1, …) into DIR",
		Long: `Write a man page for safe-agent and for each of its commands into DIR,
generated from the commands' help: safe-agent.1, safe-agent-add.1,
safe-agent-audit-show.1, … DIR is created if needed. Put them where man
finds them, e.g. ~/.local/share/man/man1 (see manpath(1)).

The pages are dated by SOURCE_DATE_EPOCH when it is set, for reproducible
packages, else today.`,
		Example: `  safe-agent man ~/.local/share/man/man1 && man safe-agent-audit
  safe-agent man /tmp/man && man -l /tmp/man/safe-agent-policy-explain.1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := writeManPages(cmd.Root(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote %d man pages to %s.\n", n, args[0])
			return nil
		},
	}
}

// writeManPages generates the pages of root's tree into dir and returns
// how many it wrote.
func writeManPages(root *cobra.Command, dir string) (int, error) {
	date, err := manDate(os.Getenv, time.Now())
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("man pages directory: %w", err)
	}
	n, err := writeManTree(root, dir, date)
	if err != nil {
		return 0, fmt.Errorf("write man pages to %s: %w", dir, err)
	}
	return n, nil
}
