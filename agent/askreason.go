package agent

import (
	"strings"

	"github.com/safe-agent/safe-agent/policy"
)

// askReason says in plain words why a request is asked, for the prompt's
// "Asked because" line: the person at the desktop should not need to know
// the policy's rule names. d is a Confirm decision; its Rule names the
// first cause (policy.Decide), its Reason holds the confirm setting's
// value, which tells "always" from "forwarded" apart.
func askReason(d policy.Decision) string {
	rule := d.Rule
	switch {
	case rule == "stored settings confirm":
		return "you added this key with --confirm (or ssh-add -c)"
	case rule == "unknown_destination":
		return `the destination is not known (unknown_destination = "confirm")`
	case strings.HasSuffix(rule, " confirm"):
		section := sectionName(strings.TrimSuffix(rule, " confirm"))
		if strings.Contains(d.Reason, `confirm = "forwarded"`) {
			return `the policy asks for every use through a forwarded agent (` + section + `: confirm = "forwarded")`
		}
		return `the policy asks for every use (` + section + `: confirm = "always")`
	}
	return "policy rule " + rule
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
