package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/termtext"
)

// longRecord is one record in full, for `audit --long` and `audit show`:
// a title line, then one "label  value" line per field the record has.
// Every value is escaped (see auditTable.cells); nothing is cut.
func longRecord(r audit.Record, loc *time.Location, color bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq %d  %s  %s\n", r.Seq, r.Time.In(loc).Format("2006-01-02 15:04:05.000 -07:00"), termtext.Escape(r.Event))
	field := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "  %-12s %s\n", label, termtext.Escape(value))
		}
	}
	if r.Decision != "" {
		d := termtext.Escape(r.Decision)
		switch r.Decision {
		case audit.DecisionAllowed:
			d = paint(color, ansiGreen, d)
		case audit.DecisionDenied:
			d = paint(color, ansiRed, d)
		}
		fmt.Fprintf(&b, "  %-12s %s\n", "decision", d)
	}
	if p := r.Prompt; p != nil {
		s := "remembered: a yes given earlier, no prompt shown"
		if p.Outcome != audit.PromptRemembered {
			s = fmt.Sprintf("asked: %s after %s", p.Outcome, time.Duration(p.WaitMS)*time.Millisecond)
		}
		fmt.Fprintf(&b, "  %-12s %s\n", "prompt", paint(color, ansiYellow, termtext.Escape(s)))
	}
	if k := r.Key; k != nil {
		field("key", strings.TrimSpace(k.Comment+" "+k.Fingerprint+" "+parenthesized(k.Type)))
		if c := k.Cert; c != nil {
			field("certificate", certLong(c, loc))
		}
	}
	if r.Purpose != nil || r.Event == audit.EventSign || r.Event == audit.EventList {
		field("purpose", auditPurpose(r))
	}
	if p := r.Purpose; p != nil && p.DataSHA256 != "" {
		field("data sha256", p.DataSHA256)
	}
	if len(r.Path) > 0 {
		field("path", auditPath(r))
		for i, h := range r.Path {
			s := strings.Join(h.Names, ", ")
			if s == "" {
				s = "(not in known_hosts)"
			}
			s += " " + h.Fingerprint
			if h.Forwarded {
				s += ", through a forwarded agent"
			}
			field("hop "+strconv.Itoa(i+1), s)
		}
	}
	if c := r.Client; c != nil {
		field("process", c.Chain)
		s := fmt.Sprintf("pid %d, uid %d", c.PID, c.UID)
		if c.Exe != "" {
			s += ", " + c.Exe
		}
		field("client", s)
	}
	field("rule", r.Rule)
	field("reason", r.Reason)
	field("detail", r.Detail)
	field("log id", r.LogID)
	field("torn", r.Torn)
	field("checkpoint", r.Checkpoint)
	field("prev hash", r.Prev)
	return b.String()
}

func parenthesized(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func certLong(c *audit.Cert, loc *time.Location) string {
	s := strconv.Quote(c.KeyID)
	if len(c.Principals) > 0 {
		s += ", principals " + strings.Join(c.Principals, ", ")
	}
	s += ", CA " + c.CAFingerprint
	if !c.ValidAfter.IsZero() {
		s += ", valid from " + c.ValidAfter.In(loc).Format(time.DateTime)
	}
	if c.ValidBefore.IsZero() {
		s += ", never expires"
	} else {
		s += ", valid until " + c.ValidBefore.In(loc).Format(time.DateTime)
	}
	return s
}

func newAuditShowCmd(path *string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "Show one audit record in full",
		Long: `Show one audit record, by the number in the SEQ column of ` + "`safe-agent audit`" + `,
with every field: the key's fingerprint and certificate, each hop's host key,
the whole process chain, the rule and the reason, and the hash that chains
it to the record before.`,
		Example: `  safe-agent audit show 1042
  safe-agent audit show 1042 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || seq == 0 {
				return fmt.Errorf("audit show %q: give the record's number, as the SEQ column of `safe-agent audit` shows it", args[0])
			}
			out := cmd.OutOrStdout()
			return runAuditShow(cmd.Context(), *path, seq, asJSON, detectStyle(out, os.Getenv), out)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func runAuditShow(_ context.Context, named string, seq uint64, asJSON bool, style outStyle, out io.Writer) error {
	path, err := auditLogPath(named)
	if err != nil {
		return err
	}
	// The log is in seq order: read back from the end to seq.
	recs, err := audit.Tail(path, 0, audit.Filter{AfterSeq: seq - 1})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no audit log at %s: the agent has not written one there yet (if it runs with --audit-log, pass the same --audit-log here)", path)
	}
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Seq != seq {
			continue
		}
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			return enc.Encode(r)
		}
		_, err := io.WriteString(out, longRecord(r, time.Local, style.color))
		return err
	}
	return fmt.Errorf("no record %d in %s or its rotated files (see `safe-agent audit` for the numbers in the SEQ column)", seq, path)
}
