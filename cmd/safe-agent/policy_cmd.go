package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check the policy file and explain its decisions",
		Long: `Check the policy file and explain its decisions.

The policy file is the one named (check FILE, explain --policy FILE),
else $SAFE_AGENT_POLICY, else the running agent's (on --socket or
$SSH_AUTH_SOCK), else $XDG_CONFIG_HOME/safe-agent/policy.toml. When
that default file does not exist, the built-in defaults apply. When an
agent answers, its keys (loaded, and stored in its keystore) are used:
explain decides for a key as the agent would, with the settings stored
with it, and both commands warn about [[key]] sections that match none
of them.`,
		Example: `  safe-agent policy check
  safe-agent policy explain --key work-laptop --path 'jump.example>db.internal' --user deploy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyExplainCmd())
	return cmd
}

// loadPolicyForCmd loads the policy the way the agent would. Invalid files
// are printed to errOut as FILE:LINE:COL: message lines and end the program
// with status 1. When no file is named (nor $SAFE_AGENT_POLICY) and an
// agent answers (st), its policy file is the one used: that is the policy
// that decides.
func loadPolicyForCmd(named string, st *agent.Status, errOut io.Writer) (*policy.Policy, error) {
	path, explicit, err := policyPath(named)
	if named == "" && os.Getenv("SAFE_AGENT_POLICY") == "" && st != nil && st.Policy != "" {
		path, explicit, err = st.Policy, !st.PolicyDefaults, nil
	}
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
	var socket string
	cmd := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file and say what each key may do",
		Long: `Validate a policy file and print, in plain words, what each key may do.

A valid file prints the summary (and any warnings, such as a missing
known_hosts file) and exits 0. An invalid file prints one line per problem,
FILE:LINE:COL: what is wrong, and exits 1.

When an agent answers (on --socket or $SSH_AUTH_SOCK), the file is its
policy file unless FILE or $SAFE_AGENT_POLICY names one, and its keys
are checked against the file: each loaded or stored key is listed with
the section that governs it, and each [[key]] match that matches none of
them is a warning (with the nearest key comment: a typo there sends a
key to [defaults]).`,
		Example: `  safe-agent policy check
  safe-agent policy check ~/.config/safe-agent/policy.toml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			named := ""
			if len(args) == 1 {
				named = args[0]
			}
			return runPolicyCheck(cmd.Context(), named, agentSocket(socket), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "agent socket whose keys to check (default $SSH_AUTH_SOCK)")
	return cmd
}

func runPolicyCheck(ctx context.Context, named, socket string, out, errOut io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ak := loadAgentKeys(ctx, socket)
	p, err := loadPolicyForCmd(named, ak.status, errOut)
	if err != nil {
		return err
	}
	fmt.Fprint(out, termtext.EscapeLines(p.Summary()))
	printPolicyUpstreams(out, p)
	if ak.status != nil {
		fmt.Fprintf(out, "\nKeys of the agent on %s:\n", termtext.Escape(socket))
		lines := ak.keySections(p)
		if len(lines) == 0 {
			fmt.Fprintln(out, "  none loaded or stored")
		}
		for _, l := range lines {
			fmt.Fprintln(out, " ", termtext.Escape(l))
		}
	}
	for _, n := range ak.notes {
		fmt.Fprintln(out, "note:", termtext.Escape(n))
	}
	for _, w := range p.Warnings() {
		fmt.Fprintln(errOut, "warning:", termtext.Escape(w))
	}
	if ak.status != nil {
		for _, w := range ak.unmatchedSections(p) {
			fmt.Fprintln(errOut, "warning:", termtext.Escape(w))
		}
	}
	return nil
}

type explainFlags struct {
	policy, key, path, user, namespace, socket string
	opaque                                     bool
	client                                     string
	clientPID                                  int
}

func newPolicyExplainCmd() *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain --key KEY [--path 'a>b'] [--user U | --namespace NS | --opaque] [--client 'ssh ← git' | --client-pid PID]",
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

When an agent answers (on --socket or $SSH_AUTH_SOCK), the request is
decided as that agent would decide it: with its policy file (unless
--policy or $SAFE_AGENT_POLICY names one), and with the key as it holds
or stores it. A comment
or fingerprint must name one of its keys ("no key matches …" otherwise),
and the settings stored with the key (add --confirm, --allow, --deny,
--max-forward-depth; ssh-add -c) are folded in. A key with certificates
loaded is explained once per certificate. Every [[key]] match that
matches none of the agent's keys is a warning. Without an agent, the key
is taken as written.

--client is the process chain that asks, the requesting process first:
'ssh ← git ← zsh' ('<' works too), each a process name or an absolute
executable path, plus unit:NAME, cgroup:/PATH or container:NAME for the
requesting process; it tries clients and [[client]] rules. --client-pid
reads the chain of a running process as the agent would. Without
either, no program is known: a key limited by clients is refused and no
[[client]] section applies.

The exit status is 0 whatever the verdict; it is 1 only when the policy
or the flags are invalid, or the key is unknown.`,
		Example: `  safe-agent policy explain --key work-laptop --path 'jump.example>db.internal' --user deploy
  safe-agent policy explain --key SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU --path github.com
  safe-agent policy explain --key work-laptop --namespace git
  safe-agent policy explain --key ~/.ssh/id_ed25519-cert.pub --path db.internal --user deploy
  safe-agent policy explain --key work-laptop --path github.com --user git --client 'ssh ← git ← claude'
  safe-agent policy explain --key work-laptop --namespace git --client-pid 4242`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyExplain(cmd.Context(), f, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy file (default $SAFE_AGENT_POLICY, else the running agent's, else $XDG_CONFIG_HOME/safe-agent/policy.toml)")
	fl.StringVar(&f.key, "key", "", "key fingerprint (SHA256:…), comment, or public key / certificate file")
	fl.StringVar(&f.path, "path", "", "hosts the request passes, like 'jump.example>db.internal' (empty: this machine)")
	fl.StringVar(&f.user, "user", "", "login user")
	fl.StringVar(&f.namespace, "namespace", "", "explain an SSHSIG signature with this namespace (git, file, …)")
	fl.BoolVar(&f.opaque, "opaque", false, "explain a signature that is neither a login nor SSHSIG")
	fl.StringVar(&f.socket, "socket", "", "agent socket whose keys to use (default $SSH_AUTH_SOCK)")
	fl.StringVar(&f.client, "client", "", "process chain that asks, requesting process first, like 'ssh ← git ← zsh'")
	fl.IntVar(&f.clientPID, "client-pid", 0, "read the process chain of this running process")
	_ = cmd.MarkFlagRequired("key")
	cmd.MarkFlagsMutuallyExclusive("user", "namespace", "opaque")
	cmd.MarkFlagsMutuallyExclusive("client", "client-pid")
	return cmd
}

func runPolicyExplain(ctx context.Context, f explainFlags, now time.Time, out, errOut io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ak := loadAgentKeys(ctx, agentSocket(f.socket))
	p, err := loadPolicyForCmd(f.policy, ak.status, errOut)
	if err != nil {
		return err
	}
	targets, err := explainTargets(f.key, ak)
	if err != nil {
		return err
	}
	req := policy.Request{Purpose: policy.PurposeLogin, User: f.user, Now: now}
	switch {
	case f.namespace != "":
		req.Purpose, req.Namespace = policy.PurposeSSHSIG, f.namespace
	case f.opaque:
		req.Purpose = policy.PurposeOpaque
	}
	notes, err := explainHops(p, f.path, &req)
	if err != nil {
		return err
	}
	if req.Client, err = explainClient(f); err != nil {
		return err
	}
	if ak.status != nil {
		for _, w := range ak.unmatchedSections(p) {
			fmt.Fprintln(errOut, "warning:", termtext.Escape(w))
		}
	}
	for i, t := range targets {
		if i > 0 {
			fmt.Fprintln(out)
		}
		req.Key, req.Settings = t.key, t.settings
		printDecision(out, p.Decide(req), t.from)
		if req.Client != nil {
			fmt.Fprintf(out, "client:  %s\n", termtext.Escape(req.Client.Text()))
		}
	}
	for _, n := range append(notes, ak.notes...) {
		fmt.Fprintln(out, "note:", termtext.Escape(n))
	}
	return nil
}

// printDecision prints one verdict. The reason quotes the user, namespace
// and key comment it was given, so it is escaped for the terminal.
func printDecision(out io.Writer, d policy.Decision, from string) {
	fmt.Fprintf(out, "verdict: %s\n", d.Verdict)
	fmt.Fprintf(out, "rule:    %s\n", termtext.Escape(d.Rule))
	fmt.Fprintf(out, "reason:  %s\n", termtext.Escape(d.Reason))
	if d.Verdict == policy.Confirm && d.Remember > 0 {
		fmt.Fprintf(out, "a yes is remembered for %s\n", d.Remember)
	}
	if from != "" {
		fmt.Fprintf(out, "key:     %s\n", termtext.Escape(from))
	}
}

// explainClient reads --client or --client-pid; nil when neither is
// given (no program known).
func explainClient(f explainFlags) (*policy.Client, error) {
	switch {
	case f.client != "":
		c, err := policy.ParseClient(f.client)
		if err != nil {
			return nil, fmt.Errorf("explain: --client: %w", err)
		}
		return c, nil
	case f.clientPID != 0:
		c := agent.ReadClient(f.clientPID)
		if c.Unreadable != "" {
			return nil, fmt.Errorf("explain: --client-pid %d: cannot read its process chain (%s)", f.clientPID, c.Unreadable)
		}
		return c, nil
	}
	return nil, nil
}

// explainHops turns --path into the request's hops; a host known_hosts
// does not name is noted.
func explainHops(p *policy.Policy, path string, req *policy.Request) ([]string, error) {
	if strings.TrimSpace(path) == "" {
		return nil, nil
	}
	var notes []string
	names := strings.Split(path, ">")
	for i, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, fmt.Errorf("explain: --path %q has an empty host; write it like 'jump.example>db.internal'", path)
		}
		h := policy.Hop{Forwarded: i < len(names)-1 || req.Purpose != policy.PurposeLogin}
		if keys := p.ResolveHost(n); len(keys) > 0 {
			h.HostKey = keys[0]
		} else {
			notes = append(notes, fmt.Sprintf("%s is not in known_hosts (%s), so it counts as a host with no name.", n, strings.Join(p.KnownHostsFiles(), ", ")))
		}
		req.Hops = append(req.Hops, h)
	}
	return notes, nil
}

// explainTargets reads --key: a public key or certificate file (when a
// file of that name exists), else a fingerprint or a comment. With an
// agent, a fingerprint or comment must name one of its keys, and the
// settings it keeps for the key are folded in; without one, the key is
// taken as written.
func explainTargets(arg string, ak agentKeys) ([]explainTarget, error) {
	k, pub, isFile, err := explainKeyFile(arg)
	switch {
	case err != nil:
		return nil, err
	case isFile && ak.status != nil:
		return []explainTarget{ak.withStored(k, pub)}, nil
	case isFile:
		return []explainTarget{{key: k}}, nil
	case ak.status != nil:
		return ak.resolve(arg)
	case strings.HasPrefix(arg, "SHA256:"):
		return []explainTarget{{key: policy.Key{Fingerprint: arg}}}, nil
	}
	return []explainTarget{{key: policy.Key{Comment: arg}}}, nil
}

// explainKeyFile reads --key as a public key or certificate file; isFile
// is false when arg names no file (it is then a fingerprint or comment).
func explainKeyFile(arg string) (k policy.Key, pub ssh.PublicKey, isFile bool, err error) {
	if strings.HasPrefix(arg, "SHA256:") {
		return k, nil, false, nil
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !strings.ContainsRune(arg, '/') {
			return k, nil, false, nil
		}
		return k, nil, false, fmt.Errorf("explain: --key %s: %w", arg, err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return k, nil, false, fmt.Errorf("explain: --key %s is not a public key or certificate file: %w", arg, err)
	}
	k = policy.Key{Comment: comment, Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub)}
	if cert, ok := pub.(*ssh.Certificate); ok {
		k.Fingerprint = ssh.FingerprintSHA256(cert.Key)
		if k.Cert, err = policy.CertOf(cert); err != nil {
			return k, nil, false, fmt.Errorf("explain: --key %s: %w", arg, err)
		}
	}
	return k, pub, true, nil
}

// printPolicyUpstreams lists the policy's upstream agents, each with
// whether a socket is there now (a missing one is retried by the agent,
// never fatal; `safe-agent status` says whether it answers).
func printPolicyUpstreams(out io.Writer, p *policy.Policy) {
	ups := p.Upstreams()
	if len(ups) == 0 {
		return
	}
	fmt.Fprintf(out, "\nUpstream agents (their keys get these rules too; a sign request waits at most %s):\n", p.UpstreamTimeout())
	for _, u := range ups {
		state := "socket present"
		if fi, err := os.Stat(u); err != nil {
			state = "no socket there now: the agent retries it"
		} else if fi.Mode().Type() != os.ModeSocket {
			state = "not a socket"
		}
		fmt.Fprintf(out, "  %s (%s)\n", termtext.Escape(u), state)
	}
}
