package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check the policy file and explain its decisions",
		Long: `Check the policy file and explain its decisions, without a running agent.

The policy file is FILE or --policy, else $SAFE_AGENT_POLICY, else
$XDG_CONFIG_HOME/safe-agent/policy.toml. When that default file does not
exist, the built-in defaults apply.`,
		Example: `  safe-agent policy check
  safe-agent policy explain --key work-laptop --path 'jump.example>db.internal' --user deploy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyExplainCmd())
	return cmd
}

// policyCmdPath picks the policy file: the one named, else
// $SAFE_AGENT_POLICY, else the default path. explicit reports whether the
// person chose it (then a missing file is an error).
func policyCmdPath(named string) (path string, explicit bool, err error) {
	if named != "" {
		return named, true, nil
	}
	if env := os.Getenv("SAFE_AGENT_POLICY"); env != "" {
		return env, true, nil
	}
	path, err = policy.DefaultPath()
	return path, false, err
}

// loadPolicyForCmd loads the policy the way the agent would. Invalid files
// are printed to errOut as FILE:LINE:COL: message lines and end the program
// with status 1.
func loadPolicyForCmd(named string, errOut io.Writer) (*policy.Policy, error) {
	path, explicit, err := policyCmdPath(named)
	if err != nil {
		return nil, err
	}
	p, err := policy.Load(path)
	if err != nil && !explicit && errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(errOut, "No policy file at %s: the built-in defaults apply.\n", path)
		p, err = policy.LoadDefaults()
	}
	var fe policy.FileErrors
	if errors.As(err, &fe) {
		fmt.Fprintln(errOut, fe.Error())
		return nil, exitCodeError{code: 1}
	}
	if err != nil {
		return nil, fmt.Errorf("load the policy: %w", err)
	}
	return p, nil
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file and say what each key may do",
		Long: `Validate a policy file and print, in plain words, what each key may do.

A valid file prints the summary (and any warnings, such as a missing
known_hosts file) and exits 0. An invalid file prints one line per problem,
FILE:LINE:COL: what is wrong, and exits 1.`,
		Example: `  safe-agent policy check
  safe-agent policy check ~/.config/safe-agent/policy.toml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			named := ""
			if len(args) == 1 {
				named = args[0]
			}
			p, err := loadPolicyForCmd(named, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), termtext.EscapeLines(p.Summary()))
			for _, w := range p.Warnings() {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", termtext.Escape(w))
			}
			return nil
		},
	}
}

type explainFlags struct {
	policy, key, path, user, namespace string
	opaque                             bool
}

func newPolicyExplainCmd() *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain --key KEY [--path 'a>b'] [--user U | --namespace NS | --opaque]",
		Short: "Show what the policy decides for one request",
		Long: `Show what the policy decides for one request: the verdict (allow, deny or
confirm), the rule that decided and the reason.

--key is a key fingerprint (SHA256:…), a key comment, or a public key or
certificate file (KEY.pub, KEY-cert.pub): a certificate is matched by its
CA and principals as well (match = "ca:…", "principal:…"). --path lists the
hosts the request passes, by the names known_hosts gives them, separated
by '>': every host but the last is reached through a forwarded agent and
the login goes to the last. An empty --path is a request on your own
machine. With --namespace (an SSHSIG signature, as ssh-keygen -Y sign)
or --opaque, every host on the path is a forwarding hop.

The exit status is 0 whatever the verdict; it is 1 only when the policy
or the flags are invalid.`,
		Example: `  safe-agent policy explain --key work-laptop --path 'jump.example>db.internal' --user deploy
  safe-agent policy explain --key SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU --path github.com
  safe-agent policy explain --key work-laptop --namespace git
  safe-agent policy explain --key ~/.ssh/id_ed25519-cert.pub --path db.internal --user deploy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyExplain(f, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy file (default $SAFE_AGENT_POLICY or $XDG_CONFIG_HOME/safe-agent/policy.toml)")
	fl.StringVar(&f.key, "key", "", "key fingerprint (SHA256:…), comment, or public key / certificate file")
	fl.StringVar(&f.path, "path", "", "hosts the request passes, like 'jump.example>db.internal' (empty: this machine)")
	fl.StringVar(&f.user, "user", "", "login user")
	fl.StringVar(&f.namespace, "namespace", "", "explain an SSHSIG signature with this namespace (git, file, …)")
	fl.BoolVar(&f.opaque, "opaque", false, "explain a signature that is neither a login nor SSHSIG")
	_ = cmd.MarkFlagRequired("key")
	cmd.MarkFlagsMutuallyExclusive("user", "namespace", "opaque")
	return cmd
}

func runPolicyExplain(f explainFlags, now time.Time, out, errOut io.Writer) error {
	p, err := loadPolicyForCmd(f.policy, errOut)
	if err != nil {
		return err
	}
	req := policy.Request{Purpose: policy.PurposeLogin, User: f.user, Now: now}
	key, err := explainKey(f.key)
	if err != nil {
		return err
	}
	req.Key = key
	switch {
	case f.namespace != "":
		req.Purpose, req.Namespace = policy.PurposeSSHSIG, f.namespace
	case f.opaque:
		req.Purpose = policy.PurposeOpaque
	}
	var notes []string
	if strings.TrimSpace(f.path) != "" {
		names := strings.Split(f.path, ">")
		for i, n := range names {
			n = strings.TrimSpace(n)
			if n == "" {
				return fmt.Errorf("explain: --path %q has an empty host; write it like 'jump.example>db.internal'", f.path)
			}
			h := policy.Hop{Forwarded: i < len(names)-1 || req.Purpose != policy.PurposeLogin}
			if keys := p.ResolveHost(n); len(keys) > 0 {
				h.HostKey = keys[0]
			} else {
				notes = append(notes, fmt.Sprintf("%s is not in known_hosts (%s), so it counts as a host with no name.", n, strings.Join(p.KnownHostsFiles(), ", ")))
			}
			req.Hops = append(req.Hops, h)
		}
	}
	d := p.Decide(req)
	// The reason quotes the user, namespace and key comment it was given.
	fmt.Fprintf(out, "verdict: %s\n", d.Verdict)
	fmt.Fprintf(out, "rule:    %s\n", termtext.Escape(d.Rule))
	fmt.Fprintf(out, "reason:  %s\n", termtext.Escape(d.Reason))
	if d.Verdict == policy.Confirm && d.Remember > 0 {
		fmt.Fprintf(out, "a yes is remembered for %s\n", d.Remember)
	}
	for _, n := range notes {
		fmt.Fprintln(out, "note:", termtext.Escape(n))
	}
	return nil
}

// explainKey reads --key: a fingerprint, a public key or certificate file
// (when a file of that name exists), or else a key comment.
func explainKey(arg string) (policy.Key, error) {
	if strings.HasPrefix(arg, "SHA256:") {
		return policy.Key{Fingerprint: arg}, nil
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !strings.ContainsRune(arg, '/') {
			return policy.Key{Comment: arg}, nil
		}
		return policy.Key{}, fmt.Errorf("explain: --key %s: %w", arg, err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return policy.Key{}, fmt.Errorf("explain: --key %s is not a public key or certificate file: %w", arg, err)
	}
	k := policy.Key{Comment: comment, Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub)}
	if cert, ok := pub.(*ssh.Certificate); ok {
		k.Fingerprint = ssh.FingerprintSHA256(cert.Key)
		if k.Cert, err = policy.CertOf(cert); err != nil {
			return policy.Key{}, fmt.Errorf("explain: --key %s: %w", arg, err)
		}
	}
	return k, nil
}
