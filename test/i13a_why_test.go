package test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestI13aWhy: after the real agent refused a forwarded login (the policy
// allows the key only on jump) and a login the person answered no to,
// `safe-agent why` tells both in plain words: when, what, the path, the
// process, the rule, and the one change that would allow it.
func TestI13aWhy(t *testing.T) {
	s := newI13aNet(t, `[defaults]
confirm = "never"
[[key]]
match = "work"
allow = ["jump"]
[[key]]
match = "asked"
confirm = "always"
`)
	work := s.addKey("work", "ssh-add")
	asked := s.addKey("asked", "ssh-add")

	out, errOut, status := s.cli("why")
	if status != 0 || errOut != "" || out != "No refusals in "+s.a.Audit+".\n" {
		t.Fatalf("why before any refusal: exit %d, %q %q", status, out, errOut)
	}

	if out, ok := s.login(work, "jump", "target"); ok {
		t.Fatalf("jump>target reached, want refused:\n%s", out)
	}
	s.ask.answer("no")
	if out, ok := s.login(asked, "jump"); ok {
		t.Fatalf("a login answered no reached jump:\n%s", out)
	}

	out, errOut, status = s.cli("why")
	if status != 0 || errOut != "" {
		t.Fatalf("why: exit %d, stderr %q", status, errOut)
	}
	blocks := strings.Split(out, "\n\n")
	if len(blocks) != 2 {
		t.Fatalf("why printed %d refusals, want 2:\n%s", len(blocks), out)
	}
	user := currentUser(t)
	for i, want := range [][]string{
		{
			"): refused a login to target (the key was hidden from ssh on jump)\n",
			"  key:     \"work\" (SHA256:",
			"  path:    here → jump (forwarded) → target\n",
			"  by:      ssh (",
			"  rule:    key \"work\" allow\n",
			"  why:     Refused: key \"work\" (SHA256:",
			"  fix:     To permit it, add \"jump>target\" to that allow list in " + s.policyFile() + ".\n",
			"  check:   safe-agent policy explain --key work --path 'jump>target'",
		},
		{
			"): refused a login as " + user + " to jump\n",
			"  key:     \"asked\" (SHA256:",
			"  path:    here → jump\n",
			"  rule:    key \"asked\" confirm\n",
			"  why:     Ask first: key \"asked\" (SHA256:",
			"not confirmed (the person said no)\n",
			"  fix:     you answered no; if it was you, run the command again and answer yes\n",
			"  check:   safe-agent policy explain --key asked --path jump --user " + user + "\n",
		},
	} {
		for _, w := range want {
			if !strings.Contains(blocks[i], w) {
				t.Errorf("refusal %d lacks %q:\n%s", i+1, w, blocks[i])
			}
		}
	}

	// -n 1: only the newest.
	out, _, _ = s.cli("why", "-n", "1")
	if strings.Count(out, "): refused ") != 1 || !strings.Contains(out, "refused a login as "+user+" to jump") {
		t.Errorf("why -n 1:\n%s", out)
	}
	// --since: none in the future.
	out, _, _ = s.cli("why", "--since", "2099-01-01")
	if out != "No refusals in "+s.a.Audit+" since 2099-01-01.\n" {
		t.Errorf("why --since 2099-01-01: %q", out)
	}
	// --json: the same, for scripts.
	out, _, _ = s.cli("why", "--json")
	var list []struct {
		Rule, Fix, What, Path, Explain string
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("why --json: %v\n%s", err, out)
	}
	if len(list) != 2 || list[0].Rule != `key "work" allow` || !strings.HasPrefix(list[0].Fix, `To permit it, add "jump>target"`) ||
		list[1].Fix != "you answered no; if it was you, run the command again and answer yes" {
		t.Errorf("why --json:\n%s", out)
	}
	// The check line is right: explain refuses the same way.
	eout, _, _ := s.cli("policy", "explain", "--key", "work", "--path", "jump>target")
	if !strings.HasPrefix(eout, "verdict: deny\nrule:    key \"work\" allow\n") {
		t.Errorf("the suggested explain says:\n%s", eout)
	}
}
