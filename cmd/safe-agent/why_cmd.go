package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/termtext"
)

type whyFlags struct {
	n        int
	since    string
	json     bool
	auditLog string
	socket   string
}

func newWhyCmd() *cobra.Command {
	var f whyFlags
	cmd := &cobra.Command{
		Use:   "why",
		Short: "Say why the agent refused: the newest refusals, their rule and the fix",
		Long: `Print the newest refusals from the audit log in plain words: when, which
key, what for (a login, a git signature…), along which path and for which
program, the rule that refused, why, and the one change that would allow
it (or how to check one with ` + "`safe-agent policy explain`" + `).

The audit log is --audit-log, else the running agent's (on --socket or
$SSH_AUTH_SOCK), else $XDG_STATE_HOME/safe-agent/audit.jsonl.`,
		Example: `  safe-agent why
  safe-agent why -n 1
  safe-agent why --since 10m
  safe-agent why --json | jq '.[].fix'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWhy(f, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&f.n, "lines", "n", 5, "how many of the newest refusals to show")
	fl.StringVar(&f.since, "since", "", "only refusals since a duration ago (10m, 2h, 3d) or a time (2025-03-01 14:00)")
	fl.BoolVar(&f.json, "json", false, "print JSON")
	fl.StringVar(&f.auditLog, "audit-log", "", "audit log file (default: the running agent's, else $XDG_STATE_HOME/safe-agent/audit.jsonl)")
	fl.StringVar(&f.socket, "socket", "", "agent socket, to find its audit log (default $SSH_AUTH_SOCK)")
	return cmd
}

// refusalText is one refusal as `why` tells it.
type refusalText struct {
	Time    time.Time `json:"time"`
	Seq     uint64    `json:"seq"`
	Event   string    `json:"event"`
	Key     string    `json:"key,omitempty"`
	What    string    `json:"what"`
	Path    string    `json:"path,omitempty"`
	Process string    `json:"process,omitempty"`
	Rule    string    `json:"rule,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Fix     string    `json:"fix,omitempty"`
	Explain string    `json:"explain,omitempty"` // a policy explain command line for this request
}

func runWhy(f whyFlags, now time.Time, out, errOut io.Writer) error {
	if f.n < 1 {
		return fmt.Errorf("-n %d: give how many refusals to show (1 or more)", f.n)
	}
	path, err := whyAuditLog(f)
	if err != nil {
		return err
	}
	filter := audit.Filter{Decision: audit.DecisionDenied}
	if f.since != "" {
		if filter.Since, err = parseSince(f.since, now); err != nil {
			return err
		}
	}
	recs, err := audit.Tail(path, f.n, filter)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no audit log at %s: the agent has not written one there yet (if it runs with --audit-log, pass the same --audit-log here)", path)
	}
	if err != nil {
		return fmt.Errorf("read the audit log: %w", err)
	}
	texts := make([]refusalText, len(recs))
	for i, r := range recs {
		texts[i] = describeRefusal(r)
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(texts)
	}
	if len(texts) == 0 {
		since := ""
		if f.since != "" {
			since = " since " + f.since
		}
		fmt.Fprintf(out, "No refusals in %s%s.\n", termtext.Escape(path), since)
		return nil
	}
	for i, t := range texts {
		if i > 0 {
			fmt.Fprintln(out)
		}
		printRefusal(out, t, now)
	}
	return nil
}

// whyAuditLog is the log to read: the one named, else the running
// agent's, else the default.
func whyAuditLog(f whyFlags) (string, error) {
	if f.auditLog != "" {
		return f.auditLog, nil
	}
	if st, err := agentStatus(agentSocket(f.socket)); err == nil && st.AuditLog != "" {
		return st.AuditLog, nil
	}
	return auditLogPath("")
}

// printRefusal prints one refusal. Most of a record came from clients
// (user names, comments, host names, process names), so every field is
// escaped for the terminal.
func printRefusal(w io.Writer, t refusalText, now time.Time) {
	e := termtext.Escape
	fmt.Fprintf(w, "%s (%s ago): refused %s\n", t.Time.Local().Format("2006-01-02 15:04:05"), shortDuration(now.Sub(t.Time)), e(t.What))
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-8s %s\n", label+":", e(v))
		}
	}
	line("key", t.Key)
	line("path", t.Path)
	line("by", t.Process)
	line("rule", t.Rule)
	line("why", t.Reason)
	line("fix", t.Fix)
	line("check", t.Explain)
}

// describeRefusal puts a denied record in plain words.
func describeRefusal(r audit.Record) refusalText {
	t := refusalText{Time: r.Time, Seq: r.Seq, Event: r.Event, Rule: r.Rule, What: whyWhat(r), Path: whyPath(r.Path), Process: whyProcess(r.Client)}
	if k := r.Key; k != nil {
		t.Key = k.Fingerprint
		if k.Comment != "" {
			t.Key = fmt.Sprintf("%q (%s)", k.Comment, k.Fingerprint)
		}
		if k.Cert != nil {
			t.Key += fmt.Sprintf(" with certificate %q", k.Cert.KeyID)
		}
	}
	t.Reason, t.Fix = splitFix(r.Reason)
	if t.Fix == "" {
		t.Fix = fixForRule(r)
	}
	if t.Reason == "" {
		t.Reason = r.Detail
	}
	t.Explain = explainCommand(r)
	return t
}

func whyWhat(r audit.Record) string {
	switch r.Event {
	case audit.EventSign:
	case audit.EventList:
		return hiddenWhat(r.Path)
	case audit.EventBindFailed:
		return "a session-bind (the connection is no longer trusted)"
	default:
		return r.Event
	}
	p := r.Purpose
	dest := "an unknown host"
	if n := len(r.Path); n > 0 && !r.Path[n-1].Forwarded {
		dest = hopName(r.Path[n-1])
	}
	switch {
	case p == nil:
		return "a signature"
	case p.Kind == audit.PurposeLogin && p.User != "":
		return fmt.Sprintf("a login as %s to %s", p.User, dest)
	case p.Kind == audit.PurposeLogin:
		return "a login to " + dest
	case p.Kind == audit.PurposeSSHSig:
		return fmt.Sprintf("an SSHSIG signature (ssh-keygen -Y sign, namespace %q)", p.Namespace)
	}
	return "a signature that is neither a login nor SSHSIG"
}

// hiddenWhat says what a key hidden from a list through a forwarded
// agent could not do: ssh on a host lists the keys after it bound the
// login it is about to make, so the last hop is where it would log in.
func hiddenWhat(path []audit.Hop) string {
	n := len(path)
	switch {
	case n >= 2 && !path[n-1].Forwarded:
		return fmt.Sprintf("a login to %s (the key was hidden from ssh on %s)", hopName(path[n-1]), hopName(path[n-2]))
	case n >= 1:
		return fmt.Sprintf("a use through %s (the key was hidden from the key list there)", hopName(path[n-1]))
	}
	return "listing a key (the key was hidden)"
}

func hopName(h audit.Hop) string {
	if len(h.Names) > 0 {
		return h.Names[0]
	}
	return h.Fingerprint
}

// whyPath is "here → jump (forwarded) → db"; "" when the request came
// from this machine directly.
func whyPath(hops []audit.Hop) string {
	if len(hops) == 0 {
		return ""
	}
	return audit.PathOf(hops, nil).Long()
}

func whyProcess(c *audit.Client) string {
	switch {
	case c == nil:
		return ""
	case c.Chain != "":
		return c.Chain
	case c.Exe != "":
		return fmt.Sprintf("%s (%d)", c.Exe, c.PID)
	}
	return fmt.Sprintf("pid %d", c.PID)
}

// splitFix splits a reason into what happened (its first sentence) and
// what to change (the sentences after it): the policy's reasons end with
// the change that would allow the request. Sentence ends inside quotes
// (a key comment, a host name) do not count.
func splitFix(reason string) (what, fix string) {
	inQuote, escaped := false, false
	for i, c := range reason {
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = inQuote
		case c == '"':
			inQuote = !inQuote
		case c == '.' && !inQuote && strings.HasPrefix(reason[i:], ". ") && len(reason) > i+2:
			next := []rune(reason[i+2:])[0]
			if unicode.IsUpper(next) {
				return reason[:i+1], strings.TrimSpace(reason[i+2:])
			}
		}
	}
	return reason, ""
}

// fixForRule is the fix for refusals whose reason does not say one.
func fixForRule(r audit.Record) string {
	if p := r.Prompt; p != nil {
		switch p.Outcome {
		case audit.PromptNo:
			return "you answered no; if it was you, run the command again and answer yes"
		case audit.PromptTimeout:
			return "nobody answered the prompt in time: run the command again and answer it, or raise confirm_timeout in the policy"
		case audit.PromptError:
			return "no prompt could be shown: run `safe-agent doctor`, which checks the prompt the agent uses"
		}
	}
	switch r.Rule {
	case "ssh-add -h":
		return "the key was added with ssh-add -h: add it again with destination constraints that include this path, or use `safe-agent add --allow` instead"
	case "session-bind":
		return "the login does not match the connection's session-bind: use OpenSSH 8.9 or newer, and check the hosts on the path for tampering"
	case "audit":
		return "fix the audit log's disk or permissions (`safe-agent doctor` checks it)"
	case "refusal_memory":
		return "it followed a prompt you refused on the same connection; run the command again to be asked afresh"
	case "audit rate limit":
		return "too many requests through this forwarded path: wait for the rate to drop, and check what on the path sends them"
	}
	if r.Event == audit.EventBindFailed {
		return "check the hosts on this path for tampering; ssh itself never sends a session-bind that fails"
	}
	return ""
}

// explainCommand is the `safe-agent policy explain` line that decides the
// same request again, to try a change of the policy before reconnecting.
func explainCommand(r audit.Record) string {
	purpose := r.Purpose
	if r.Event == audit.EventList {
		// A hidden key: judged as the login it would be used for.
		purpose = &audit.Purpose{Kind: audit.PurposeLogin}
	} else if r.Event != audit.EventSign {
		return ""
	}
	if r.Key == nil || purpose == nil {
		return ""
	}
	if n := len(r.Path); n > 0 && r.Path[n-1].Forwarded && purpose.Kind == audit.PurposeLogin {
		return "" // the destination was not bound: explain cannot name it
	}
	key := r.Key.Fingerprint
	if r.Key.Comment != "" {
		key = r.Key.Comment
	}
	args := []string{"safe-agent", "policy", "explain", "--key", shellWord(key)}
	if len(r.Path) > 0 {
		names := make([]string, len(r.Path))
		for i, h := range r.Path {
			names[i] = hopName(h)
		}
		args = append(args, "--path", shellWord(strings.Join(names, ">")))
	}
	switch purpose.Kind {
	case audit.PurposeLogin:
		if purpose.User != "" {
			args = append(args, "--user", shellWord(purpose.User))
		}
	case audit.PurposeSSHSig:
		args = append(args, "--namespace", shellWord(purpose.Namespace))
	default:
		args = append(args, "--opaque")
	}
	return strings.Join(args, " ")
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(unicode.IsLetter(c) || unicode.IsDigit(c) || strings.ContainsRune("@%+=:,./-_", c))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
