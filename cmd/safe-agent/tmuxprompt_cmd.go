package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/notify"
)

// newTmuxPromptCmd is the program the agent runs in a tmux popup to ask
// without a desktop: it shows the question from TEXT-FILE (written by the
// agent, 0600) and, for a yes, writes it to ANSWER-FILE and exits 0; any
// other answer exits 1. Hidden: people never run it themselves.
func newTmuxPromptCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "tmux-prompt TEXT-FILE ANSWER-FILE",
		Short:  "Ask a confirmation question in a tmux popup (used by the agent)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := notify.RunTmuxPrompt(os.Stdin, cmd.OutOrStdout(), args[0], args[1], notify.TypeAhead); code != 0 {
				return exitCodeError{code: code}
			}
			return nil
		},
	}
}
