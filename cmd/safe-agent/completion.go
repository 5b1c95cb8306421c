package main

import "github.com/spf13/cobra"

// setupCompletion adds cobra's `completion` command now (cobra would add it
// at Execute) so that it and its subcommands get examples like every other
// command, and completes flag values that have a fixed set.
func setupCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Long = `Print a script that makes your shell complete safe-agent's commands,
flags and arguments. Load it in the current shell, or install it so that
every new shell has it:

  bash:  source <(safe-agent completion bash)
         safe-agent completion bash > ~/.local/share/bash-completion/completions/safe-agent
  zsh:   source <(safe-agent completion zsh)
         safe-agent completion zsh > "${fpath[1]}/_safe-agent"   (needs compinit)
  fish:  safe-agent completion fish | source
         safe-agent completion fish > ~/.config/fish/completions/safe-agent.fish

See each subcommand's --help for details.`
		c.Example = `  source <(safe-agent completion bash)
  safe-agent completion zsh > "${fpath[1]}/_safe-agent"
  safe-agent completion fish > ~/.config/fish/completions/safe-agent.fish`
		for _, sub := range c.Commands() {
			switch sh := sub.Name(); sh {
			case "bash":
				sub.Example = "  source <(safe-agent completion bash)\n  safe-agent completion bash > ~/.local/share/bash-completion/completions/safe-agent"
			case "zsh":
				sub.Example = "  source <(safe-agent completion zsh)\n  safe-agent completion zsh > \"${fpath[1]}/_safe-agent\""
			case "fish":
				sub.Example = "  safe-agent completion fish | source\n  safe-agent completion fish > ~/.config/fish/completions/safe-agent.fish"
			default:
				sub.Example = "  safe-agent completion " + sh + " | Out-String | Invoke-Expression"
			}
		}
	}
	// Flags whose values are a fixed set.
	fixed := map[string][]string{
		"keystore": {"keyring", "none"},
		"decision": {"allowed", "denied", "asked"},
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for name, values := range fixed {
			if f := c.LocalNonPersistentFlags().Lookup(name); f != nil {
				_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
