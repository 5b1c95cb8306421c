package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
)

// errNotSafeAgent: something answers on the socket, but not safe-agent
// (typically OpenSSH's ssh-agent or a desktop keyring's agent).
var errNotSafeAgent = errors.New("not safe-agent")

// agentStatus asks the agent on socket for its status. The error says
// what is wrong in words a person can act on.
func agentStatus(socket string) (agent.Status, error) {
	var st agent.Status
	ag, conn := dialAgent(socket)
	if ag == nil {
		return st, fmt.Errorf("no agent answers on %s", socket)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	res, err := ag.Extension(agent.ExtStatus, nil)
	switch {
	case errors.Is(err, sshagent.ErrExtensionUnsupported):
		return st, fmt.Errorf("the agent on %s is %w", socket, errNotSafeAgent)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return st, fmt.Errorf("no agent answers on %s (the socket accepts connections, but nothing replies)", socket)
	case err != nil:
		return st, fmt.Errorf("the agent on %s: %w", socket, err)
	case len(res) == 0:
		return st, fmt.Errorf("the agent on %s sent an empty reply", socket)
	}
	if err := json.Unmarshal(res[1:], &st); err != nil {
		return st, fmt.Errorf("the agent on %s is %w (its status reply is not safe-agent's: %v)", socket, errNotSafeAgent, err)
	}
	return st, nil
}

type statusFlags struct {
	socket string
	json   bool
	n      int
}

// statusReport is `status --json`.
type statusReport struct {
	agent.Status
	Recent      []audit.Record `json:"recent"`
	RecentError string         `json:"recent_error,omitempty"`
}

func newStatusCmd() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running agent: socket, keys and their settings, policy, audit log, recent decisions",
		Long: `Ask the running agent (on --socket, else $SSH_AUTH_SOCK, else the default
socket) what it is doing: its pid and socket, the keys it holds with their
settings (confirm, allow, deny, forward depth, lifetime), the policy file in
force (or that there is none and the built-in defaults apply) and whether
its last reload failed (the agent then keeps the last good policy), the
program it asks confirmations with (resolved by the agent in its own
environment: "NONE" and why when it cannot ask), the audit log, and the
newest decisions in that log.

Exits 1, saying how to start the agent, when no safe-agent answers.`,
		Example: `  safe-agent status
  safe-agent status -n 20
  safe-agent status --json | jq .keys`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(f, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&f.socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON")
	cmd.Flags().IntVarP(&f.n, "lines", "n", 5, "how many recent decisions to show (0 = none)")
	return cmd
}

func runStatus(f statusFlags, out io.Writer) error {
	socket := agentSocket(f.socket)
	st, err := agentStatus(socket)
	if err != nil {
		fix := "start it with `safe-agent serve` (or `safe-agent service install`), and point SSH_AUTH_SOCK at it: eval \"$(safe-agent env)\""
		if errors.Is(err, errNotSafeAgent) {
			fix = "point SSH_AUTH_SOCK at safe-agent: eval \"$(safe-agent env)\" (run `safe-agent doctor` for more)"
		}
		return exitCodeError{code: 1, msg: fmt.Sprintf("%v: %s", err, fix)}
	}
	rep := statusReport{Status: st, Recent: []audit.Record{}}
	if f.n > 0 && st.AuditLog != "" {
		recs, err := audit.Tail(st.AuditLog, f.n, audit.Filter{Events: []string{audit.EventSign}})
		switch {
		case err == nil:
			rep.Recent = recs
		case errors.Is(err, fs.ErrNotExist):
		default:
			rep.RecentError = err.Error()
		}
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	printStatus(out, rep, socket, time.Now())
	return nil
}

// printStatus prints the status for people. What the agent reports may
// quote clients (notes about processes, key comments, host names in
// settings), so every string from it is escaped for the terminal.
func printStatus(w io.Writer, rep statusReport, socket string, now time.Time) {
	st := rep.Status
	if st.Socket != "" {
		socket = st.Socket
	}
	socket = termtext.Escape(socket)
	fmt.Fprintf(w, "safe-agent is running: pid %d, since %s (%s)\n", st.PID, st.Started.Local().Format("2006-01-02 15:04:05"), now.Sub(st.Started).Round(time.Second))
	fmt.Fprintf(w, "socket:    %s\n", socket)
	ks := termtext.Escape(orDash(st.Keystore))
	if ks == keystore.NameKeyring {
		ks = "keyring (keys added with `safe-agent add` load at start)"
	}
	fmt.Fprintf(w, "keystore:  %s\n", ks)
	if st.MemoryLocked {
		fmt.Fprintln(w, "memory:    keys held in locked memory")
	} else {
		fmt.Fprintln(w, "memory:    keys NOT in locked memory (they may be swapped to disk): raise the memlock limit and restart the agent")
	}
	pol := termtext.Escape(orDash(st.Policy))
	if st.PolicyDefaults {
		fmt.Fprintf(w, "policy:    %s does not exist: the built-in defaults apply (confirm forwarded use, at most 1 forwarding hop; `safe-agent policy check` shows them)\n", pol)
	} else {
		fmt.Fprintf(w, "policy:    %s\n", pol)
	}
	if st.PolicyError != "" {
		fmt.Fprintf(w, "           LAST RELOAD FAILED, the previous policy stays in force:\n")
		for _, l := range strings.Split(st.PolicyError, "\n") {
			fmt.Fprintf(w, "             %s\n", termtext.Escape(l))
		}
		fmt.Fprintf(w, "           fix the file (`safe-agent policy check %s`); it is reloaded when saved\n", pol)
	}
	printPromptStatus(w, st.PromptStatus)
	fmt.Fprintf(w, "audit log: %s\n", termtext.Escape(orDash(st.AuditLog)))
	for _, n := range st.Notes {
		fmt.Fprintf(w, "note:      %s\n", termtext.Escape(n))
	}
	printUpstreams(w, st.Upstreams)
	fmt.Fprintln(w)
	switch {
	case st.Locked:
		fmt.Fprintln(w, "The agent is locked (ssh-add -x): keys are hidden until `ssh-add -X`.")
	case len(st.Keys) == 0:
		fmt.Fprintln(w, "No keys loaded: add one with `safe-agent add ~/.ssh/id_ed25519` (or ssh-add).")
	default:
		keys := make([]listedKey, len(st.Keys))
		for i, k := range st.Keys {
			keys[i] = listedKey{KeyInfo: k, InStore: k.Stored, Loaded: true}
		}
		fmt.Fprintf(w, "Keys (%d):\n", len(keys))
		printKeyTable(w, keys)
	}
	if rep.RecentError != "" {
		fmt.Fprintf(w, "\nRecent decisions: cannot read the audit log: %s\n", termtext.Escape(rep.RecentError))
		return
	}
	if len(rep.Recent) > 0 {
		fmt.Fprintf(w, "\nRecent decisions (`safe-agent audit` shows more):\n")
		t := newStyledAuditTable(rep.Recent, time.Local, detectStyle(w, os.Getenv), false)
		io.WriteString(w, t.header())
		for _, r := range rep.Recent {
			io.WriteString(w, t.row(r))
		}
	}
}

// printPromptStatus says which program the agent asks with, as the agent
// itself resolved it in its own environment. An agent that does not
// report it (an older one) prints nothing.
func printPromptStatus(w io.Writer, ps agent.PromptStatus) {
	e := termtext.Escape
	switch {
	case ps.PromptSetting == "":
	case ps.PromptError != "":
		fmt.Fprintf(w, "prompt:    NONE (prompt = %q): %s\n", e(ps.PromptSetting), e(ps.PromptError))
		fmt.Fprintln(w, "           every use that needs a confirmation is refused; `safe-agent doctor` says how to fix it")
	default:
		fmt.Fprintf(w, "prompt:    %s (prompt = %q, in the agent's environment)\n", e(orDash(ps.Prompt)), e(ps.PromptSetting))
	}
}
