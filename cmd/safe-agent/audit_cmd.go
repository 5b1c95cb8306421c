package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// auditFlags are the options of `safe-agent audit`.
type auditFlags struct {
	path      string
	json      bool
	since     string
	key       string
	host      string
	decision  string
	forwarded bool
	follow    bool
	long      bool
	n         int
}

func newAuditCmd() *cobra.Command {
	var o auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: which key signed what, for which host, through which hops",
		Long: `Show the newest records of the audit log as a table, newest last: the
record's number (SEQ), time, decision (and the prompt's answer), key,
purpose, path (here → jump (forwarded) → destination), the local process chain,
and the rule that decided.

On a terminal the table fits its width: long cells are cut with "…" (a
process chain at a whole "←" element, a path keeping its destination) and,
when the terminal is narrow, the columns that matter least (PROCESS, then
PURPOSE, RULE, PATH, KEY) are left out. --long prints every field of each
record instead, and ` + "`safe-agent audit show SEQ`" + ` one record. Piped or
redirected, rows are printed whole. Decisions are coloured on a terminal
(allowed green, denied red, a prompt yellow) unless NO_COLOR is set.

The log is --audit-log, else $XDG_STATE_HOME/safe-agent/audit.jsonl
(~/.local/state/safe-agent/audit.jsonl); its rotated files (.1, .2, …) are
read too when needed. Large logs are read from the end.

Filters combine: --since takes a duration (2h, 3d) or a time (2025-03-01,
"2025-03-01 14:00", RFC 3339); --key a fingerprint or comment substring;
--host a host name substring, a glob such as '*.internal', or a host-key
fingerprint matching any hop; --decision allowed, denied or asked.`,
		Example: `  safe-agent audit
  safe-agent audit --since 2h --decision denied
  safe-agent audit --host '*.internal' --forwarded -n 200
  safe-agent audit --key work-laptop --json | jq .
  safe-agent audit --long --decision denied -n 5
  safe-agent audit show 1042
  safe-agent audit --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			out := cmd.OutOrStdout()
			return runAudit(ctx, o, detectStyle(out, os.Getenv), out, cmd.ErrOrStderr())
		},
	}
	cmd.PersistentFlags().StringVar(&o.path, "audit-log", "", "audit log file (default $XDG_STATE_HOME/safe-agent/audit.jsonl)")
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print records as JSON Lines instead of a table")
	f.BoolVarP(&o.long, "long", "l", false, "print every field of each record, one block per record, instead of a table")
	f.StringVar(&o.since, "since", "", "only records since a duration ago (2h, 3d) or a time (2025-03-01 14:00)")
	f.StringVar(&o.key, "key", "", "only this key: fingerprint or comment substring")
	f.StringVar(&o.host, "host", "", "only paths through this host: name substring, glob, or host-key fingerprint")
	f.StringVar(&o.decision, "decision", "", "only allowed, denied, or asked (a prompt was shown)")
	f.BoolVar(&o.forwarded, "forwarded", false, "only requests that came through a forwarded agent")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new records as they are written (Ctrl-C to stop)")
	f.IntVarP(&o.n, "lines", "n", 50, "how many of the newest matching records to show (0 = all)")
	cmd.MarkFlagsMutuallyExclusive("json", "long")
	cmd.AddCommand(newAuditVerifyCmd(&o.path), newAuditShowCmd(&o.path))
	return cmd
}

func runAudit(ctx context.Context, o auditFlags, style outStyle, out, errOut io.Writer) error {
	path, err := auditLogPath(o.path)
	if err != nil {
		return err
	}
	f := audit.Filter{Key: o.key, Host: o.host, Forwarded: o.forwarded}
	if o.since != "" {
		if f.Since, err = parseSince(o.since, time.Now()); err != nil {
			return err
		}
	}
	switch d := strings.ToLower(o.decision); d {
	case "", audit.DecisionAllowed, audit.DecisionDenied, "asked":
		f.Decision = d
	default:
		return fmt.Errorf("--decision %q: use allowed, denied or asked", o.decision)
	}
	if o.n < 0 {
		return fmt.Errorf("-n %d: give a number of records, or 0 for all", o.n)
	}

	// With --follow, note where the log ends before reading it, so that
	// nothing written meanwhile is lost or shown twice.
	var after uint64
	if o.follow {
		if last, err := audit.Tail(path, 1, audit.Filter{}); err == nil && len(last) == 1 {
			after = last[0].Seq
		}
	}
	recs, err := audit.Tail(path, o.n, f)
	if errors.Is(err, fs.ErrNotExist) && o.follow {
		err = nil // wait for it below
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no audit log at %s: the agent has not written one there yet (if it runs with --audit-log, pass the same --audit-log here)", path)
	}
	if err != nil {
		return err
	}

	var print func(audit.Record) error
	var table *auditTable
	switch {
	case o.json:
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		print = func(r audit.Record) error { return enc.Encode(r) }
	case o.long:
		first := true
		print = func(r audit.Record) error {
			s := longRecord(r, time.Local, style.color)
			if !first {
				s = "\n" + s
			}
			first = false
			_, err := io.WriteString(out, s)
			return err
		}
	default:
		table = newStyledAuditTable(recs, time.Local, style, o.follow)
		if len(recs) > 0 || o.follow {
			if _, err := io.WriteString(out, table.header()); err != nil {
				return err
			}
		}
		print = func(r audit.Record) error {
			_, err := io.WriteString(out, table.row(r))
			return err
		}
	}
	for _, r := range recs {
		if err := print(r); err != nil {
			return err
		}
		after = max(after, r.Seq)
	}
	if table != nil && len(recs) > 0 {
		fmt.Fprint(errOut, table.hint())
	}
	if !o.follow {
		if len(recs) == 0 {
			fmt.Fprintf(errOut, "No records in %s match.\n", path)
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	f.AfterSeq = after
	var werr error
	err = audit.Follow(ctx, path, f, func(r audit.Record) {
		if werr == nil {
			werr = print(r)
		}
		if werr != nil {
			stop() // stdout closed (e.g. piped into head)
		}
	})
	if err == nil {
		err = werr
	}
	return err
}

// parseSince reads "2h", "90m", "3d", or a date/time in local time.
func parseSince(s string, now time.Time) (time.Time, error) {
	bad := fmt.Errorf(`--since %q: give a duration such as 2h, 90m or 3d, or a time such as 2025-03-01, "2025-03-01 14:00" or 2025-03-01T14:00:00Z`, s)
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, bad
		}
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return time.Time{}, bad
		}
		return now.AddDate(0, 0, -n), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	return time.Time{}, bad
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditDecision(r audit.Record) string {
	d := orDash(r.Decision)
	switch p := r.Prompt; {
	case p == nil:
		return d
	case p.Outcome == audit.PromptRemembered:
		return d + " (remembered)"
	default:
		wait := (time.Duration(p.WaitMS) * time.Millisecond).Round(100 * time.Millisecond)
		return fmt.Sprintf("%s (asked: %s, %s)", d, p.Outcome, wait)
	}
}

func auditKey(k *audit.Key) string {
	name := ""
	switch {
	case k == nil:
		return "-"
	case k.Comment != "":
		name = k.Comment
	default:
		name = cut(k.Fingerprint, 20)
	}
	if k.Cert != nil {
		name += " (cert " + strconv.Quote(k.Cert.KeyID) + ")"
	}
	return name
}

func auditPurpose(r audit.Record) string {
	switch r.Event {
	case audit.EventSign:
	case audit.EventList:
		return "list keys"
	default:
		return r.Event // its Detail goes in the last column
	}
	p := r.Purpose
	switch {
	case p == nil:
		return "sign"
	case p.Kind == audit.PurposeLogin && p.User != "":
		return "log in as " + p.User
	case p.Kind == audit.PurposeLogin:
		return "log in"
	case p.Kind == audit.PurposeSSHSig:
		return "sign " + orDash(p.Namespace)
	default:
		return "sign opaque data"
	}
}

// auditPath renders hops in a path's short form, "here → jump.example
// (forwarded) → db.internal"; "-" for events that are not requests over a
// connection.
func auditPath(r audit.Record) string {
	if len(r.Path) == 0 && r.Event != audit.EventSign && r.Event != audit.EventList {
		return "-"
	}
	return audit.PathOf(r.Path, func(fp string) string { return cut(fp, 20) }).Short()
}

func auditProcess(c *audit.Client) string {
	switch {
	case c == nil:
		return "-"
	case c.Chain != "":
		return c.Chain
	case c.Exe != "":
		return fmt.Sprintf("%s (%d)", filepath.Base(c.Exe), c.PID)
	default:
		return fmt.Sprintf("pid %d", c.PID)
	}
}

// auditRule is the last column: the deciding rule and reason, and for
// other events their detail (a policy path, an error).
func auditRule(r audit.Record) string {
	var parts []string
	for _, s := range []string{r.Rule, r.Detail, r.Reason} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ": ")
}

func newAuditVerifyCmd(path *string) *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "verify [FILE...]",
		Short: "Check the audit log's hash chain",
		Long: `Check the audit log's hash chain: every record carries the SHA-256 of
the one before it and a sequence number, across rotated files.

With no FILE, checks the log (--audit-log or the default) and its rotated
files, oldest first; FILEs must be given oldest first.

Rotation deletes old files (those beyond the newest few, once older than
24 hours, or sooner when the disk is nearly full) and records each deletion
in the checkpoint file next to the log (audit.jsonl.checkpoint): the last
hash and the count of the deleted records. When the oldest file does not
start the chain, the checkpoint must account for every record before it;
a file deleted by hand, a deleted checkpoint or an edited one fails the
check. Prints
"ok: N records in M files" and exits 0, or prints FILE:LINE: what broke
(edited, removed, reordered, inserted or appended by hand, truncated
mid-record) and exits 1.

A last line cut short by a crash while it was written (a torn tail) is
reported and does not fail the check unless --strict: it cannot be told
apart from a file cut in the middle of its last record.

What it cannot prove: a hash chain has no secret, so someone who can write
the file can append records with a correct chain or rewrite it from any
point on, and whole records cut from the end leave a valid chain. Note the
last hash it prints somewhere else and check later that the chain still
reaches it.`,
		Example: `  safe-agent audit verify
  safe-agent audit verify --audit-log /var/log/safe-agent/audit.jsonl
  safe-agent audit verify audit.jsonl.2 audit.jsonl.1 audit.jsonl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditVerify(*path, args, strict, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on a torn last line too")
	return cmd
}

func runAuditVerify(named string, files []string, strict bool, out io.Writer) error {
	checkpoint := ""
	if len(files) == 0 {
		path, err := auditLogPath(named)
		if err != nil {
			return err
		}
		if files, err = audit.Files(path); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no audit log at %s: the agent has not written one there yet (if it runs with --audit-log, pass the same --audit-log here)", path)
		}
		checkpoint = audit.CheckpointPath(path)
	} else {
		checkpoint = audit.CheckpointFor(files[len(files)-1])
	}
	rep, err := audit.VerifyWithCheckpoint(checkpoint, files...)
	if err != nil {
		return err
	}
	for _, t := range rep.Torn {
		fmt.Fprintln(out, t)
	}
	if rep.Break != nil {
		fmt.Fprintln(out, rep.Break)
		return exitCodeError{code: 1}
	}
	fmt.Fprintln(out, verifySummary(rep))
	if strict && len(rep.Torn) > 0 {
		return exitCodeError{code: 1}
	}
	return nil
}

func verifySummary(rep audit.Report) string {
	plural := func(n int, one string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	s := fmt.Sprintf("ok: %s in %s", plural(rep.Records, "record"), plural(rep.Files, "file"))
	if rep.Records > 0 {
		s += fmt.Sprintf("\nchain: seq %d to %d, last hash %s", rep.First, rep.Last, rep.LastHash)
	}
	if c := rep.Checkpoint; c != nil {
		s += fmt.Sprintf("\nrotated away: the %d records before seq %d", c.Records, rep.First)
		if c.Files > 0 {
			s += fmt.Sprintf(" (%s, deleted %s to %s)", plural(c.Files, "file"),
				c.FirstDeleted.Local().Format("2006-01-02 15:04"), c.LastDeleted.Local().Format("2006-01-02 15:04"))
		}
		s += ", accounted for by " + c.Path
		if c.Unaccounted > 0 {
			s += fmt.Sprintf("\nwarning: %d of them were already gone when the checkpoint was started (rotated away by an older safe-agent, or deleted): nothing vouches for them", c.Unaccounted)
		}
	} else if rep.Continues {
		s += "\nthe oldest file continues a file that is no longer here (rotated away): records before it are not checked"
	}
	return s
}
