// Command safe-agent is an ssh-agent replacement that puts every signature
// through a policy engine and an audit log. See README.md.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/internal/hint"
)

func main() {
	os.Exit(run(os.Args))
}

// run dispatches on the program name first, so that a symlink named
// ssh-agent behaves exactly like `safe-agent ssh-agent`.
func run(args []string) int {
	if filepath.Base(args[0]) == "ssh-agent" {
		return sshAgentMain(args[1:], os.Stdout, os.Stderr)
	}
	root := newRootCmd()
	root.SetArgs(args[1:])
	if err := root.Execute(); err != nil {
		var ec exitCodeError
		if asExitCode(err, &ec) {
			if ec.msg != "" {
				fmt.Fprintln(os.Stderr, "safe-agent:", ec.msg)
			}
			return ec.code
		}
		printError(os.Stderr, "safe-agent", err)
		return 1
	}
	return 0
}

// printError prints err and, on a line of its own, the hint it carries:
// the message says what went wrong, the hint what to do about it.
func printError(w io.Writer, prog string, err error) {
	fmt.Fprintf(w, "%s: %v\n", prog, err)
	for _, h := range hint.All(err) {
		fmt.Fprintf(w, "hint: %s\n", strings.ReplaceAll(h, "\n", "\n      "))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "safe-agent",
		Short: "An ssh-agent that knows where your signatures go",
		Long: `safe-agent is a drop-in replacement for OpenSSH's ssh-agent. Point
SSH_AUTH_SOCK at it and keep using ssh, ssh-add, git and ssh-keygen -Y.
Every sign request goes through a policy (which hosts, through how many
forwarded agents) and is written to an audit log.`,
		Example: `  safe-agent service install        # start at every login (or: safe-agent serve)
  eval "$(safe-agent env)"           # point this shell at it
  safe-agent add ~/.ssh/id_ed25519 --confirm
  safe-agent doctor
  eval "$(safe-agent ssh-agent -s)"  # drop-in for ssh-agent`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version is the root's own flag rather than cobra's Version
		// field: the version is several lines (revision, toolchain) and
		// cobra would print it through text/template, which alone makes
		// the binary 2.5 MB larger (see renderUnit).
		RunE: func(cmd *cobra.Command, args []string) error {
			if v, _ := cmd.Flags().GetBool("version"); v {
				_, err := io.WriteString(cmd.OutOrStdout(), buildVersion())
				return err
			}
			return cmd.Help()
		},
	}
	root.Flags().BoolP("version", "v", false, "version for safe-agent")
	root.AddCommand(
		newServeCmd(),
		newSSHAgentCmd(),
		newAddCmd(),
		newListCmd(),
		newRemoveCmd(),
		newLoadCmd(),
		newForgetCmd(),
		newLockCmd(true),
		newLockCmd(false),
		newPolicyCmd(),
		newAuditCmd(),
		newEnvCmd(),
		newStatusCmd(),
		newDoctorCmd(),
		newWhyCmd(),
		newServiceCmd(),
		newManCmd(),
		newTmuxPromptCmd(),
	)
	setupCompletion(root)
	return root
}
