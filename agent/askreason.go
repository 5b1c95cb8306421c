package agent

import (
	"strings"

	"github.com/safe-agent/safe-agent/policy"
)

// askReason says in plain words why a request is asked, for the prompt's
// "Asked because" line: the person at the desktop should not need to know
// the policy's rule names. d is a Confirm decision; its finding is the
// first cause.
func askReason(d policy.Decision) string {
	f := d.Finding
	switch f.Kind {
	case policy.FindConfirmKey:
		return "you added this key with --confirm (or ssh-add -c)"
	case policy.FindUnknownDest:
		return `the destination is not known (unknown_destination = "confirm")`
	case policy.FindConfirmForwarded:
		return `the policy asks for every use through a forwarded agent (` + sectionName(f.Source) + `: confirm = "forwarded")`
	case policy.FindConfirmAlways:
		return `the policy asks for every use (` + sectionName(f.Source) + `: confirm = "always")`
	}
	return "policy rule " + d.Rule
}

// sectionName is a rule source as the policy file writes it:
// `defaults` → [defaults], `key "x"` → [[key]] match "x".
func sectionName(src string) string {
	if m, ok := strings.CutPrefix(src, "key "); ok {
		return "[[key]] match " + m
	}
	if src == "defaults" {
		return "[defaults]"
	}
	return src
}
