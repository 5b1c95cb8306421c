package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/policy"
)

// setupCompletion adds cobra's `completion` command now (cobra would add it
// at Execute) so that it and its subcommands get examples like every other
// command, completes flag values that have a fixed set, and completes key
// names and host names from the running agent and known_hosts.
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
		"keystore": keystore.Names(),
		"decision": {"allowed", "denied", "asked"},
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for name, values := range fixed {
			if f := c.LocalNonPersistentFlags().Lookup(name); f != nil {
				_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		setupNameCompletion(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// setupNameCompletion completes what a command names keys and hosts by:
// keys by fingerprint or comment as the running agent lists them, hosts by
// the plain names of the policy's known_hosts files.
func setupNameCompletion(c *cobra.Command) {
	flag := func(name string, fn cobra.CompletionFunc) {
		if c.Flags().Lookup(name) != nil {
			// An error means someone registered one already: theirs stays.
			_ = c.RegisterFlagCompletionFunc(name, fn)
		}
	}
	switch strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ") {
	case "remove", "load":
		if c.ValidArgsFunction == nil {
			// KEY may be a key file too: files when no key matches.
			c.ValidArgsFunction = keyCompletion(cobra.ShellCompDirectiveDefault)
		}
	case "policy explain":
		flag("key", keyCompletion(cobra.ShellCompDirectiveDefault))
		flag("path", hostCompletion(true))
	case "audit":
		flag("key", keyCompletion(cobra.ShellCompDirectiveNoFileComp))
		flag("host", hostCompletion(false))
	case "add":
		flag("allow", hostCompletion(true))
		flag("deny", hostCompletion(true))
	}
}

// completionTimeout bounds what a Tab press waits for the agent.
const completionTimeout = 2 * time.Second

// keyCompletion offers the keys the running agent holds: each fingerprint
// (described by its comment) and each comment (described by its
// fingerprint). It asks the agent only, never the keyring, which could
// put an unlock prompt on the desktop for a Tab press; the agent loads the
// stored keys when it starts.
func keyCompletion(directive cobra.ShellCompDirective) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		socket := ""
		if f := cmd.Flags().Lookup("socket"); f != nil {
			socket = f.Value.String()
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		keys, _ := collectKeys(ctx, agentSocket(socket), keystore.NameNone)
		var out []cobra.Completion
		seen := map[string]bool{}
		add := func(value, about string) {
			// A name a shell could not take as one word, or that would act
			// on the terminal, is not offered.
			if value == "" || seen[value] || !strings.HasPrefix(value, toComplete) ||
				termtext.Escape(value) != value || strings.ContainsAny(value, " \t'\"\\$`") {
				return
			}
			seen[value] = true
			out = append(out, cobra.CompletionWithDesc(value, termtext.Escape(about)))
		}
		for _, k := range keys {
			add(k.Fingerprint, k.Comment)
			add(k.Comment, k.Fingerprint)
		}
		return out, directive
	}
}

// hostCompletion offers the host names of the policy's known_hosts files.
// With path, the value is a path 'jump.example>db.internal' and the last
// host is completed.
func hostCompletion(path bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		named := ""
		if f := cmd.Flags().Lookup("policy"); f != nil {
			named = f.Value.String()
		}
		prefix := ""
		if i := strings.LastIndexByte(toComplete, '>'); path && i >= 0 {
			prefix = toComplete[:i+1]
		}
		var out []cobra.Completion
		for _, n := range knownHostNames(named) {
			if v := prefix + n; strings.HasPrefix(v, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// knownHostNames lists the plain host names in the known_hosts files the
// policy reads (named, else the one the agent would load), sorted. Hashed
// names are not listed (they cannot be: that is what hashing is for), nor
// wildcards, negations or @cert-authority and @revoked lines.
func knownHostNames(named string) []string {
	var files []string
	path, explicit, err := policyPath(named)
	if err == nil {
		p, err := policy.Load(path)
		if err != nil && !explicit && errors.Is(err, fs.ErrNotExist) {
			p, err = policy.LoadDefaults()
		}
		if err == nil {
			files = p.KnownHostsFiles()
		}
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		names = append(names, plainHostNames(data)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// plainHostNames reads the plain names of a known_hosts file: "[host]:22"
// is "host", another port stays "[host]:port" as the policy writes it.
func plainHostNames(data []byte) []string {
	var names []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		marker, hosts, _, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil || marker != "" {
			continue
		}
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h[:1], "|!") || strings.ContainsAny(h, "*?") || termtext.Escape(h) != h {
				continue
			}
			if host, ok := strings.CutSuffix(h, "]:22"); ok && strings.HasPrefix(host, "[") {
				h = host[1:]
			}
			names = append(names, strings.ToLower(h))
		}
	}
	return names
}
