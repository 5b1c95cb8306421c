package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// i13aNet is three real sshd hosts (jump, target, other), an agent with a
// policy and a prompt program that answers yes, and keys added to the
// agent in the ways a user adds them.
type i13aNet struct {
	t   *testing.T
	n   *sshNet
	a   *agentProc
	ask *fakeAskpass
	dir string
}

func newI13aNet(t *testing.T, policyBody string) *i13aNet {
	t.Helper()
	n := newSSHNet(t, "jump", "target", "other")
	ask := newFakeAskpass(t)
	ask.answer("yes")
	pol := n.policy(fmt.Sprintf("prompt = %q\nconfirm_timeout = \"10s\"\n", ask.Path) + policyBody)
	a := startAgent(t, agentOpts{policy: pol})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	return &i13aNet{t: t, n: n, a: a, ask: ask, dir: dir}
}

// policyFile is the agent's policy file.
func (s *i13aNet) policyFile() string {
	return filepath.Join(filepath.Dir(s.a.Home), "config", "policy.toml")
}

// addKey makes a key called name, lets it log in everywhere, loads it with
// the command given (the key file is appended), and removes the private
// half so that only the agent can sign. It returns the public key file.
func (s *i13aNet) addKey(name string, add ...string) string {
	s.t.Helper()
	key := newKey(s.t, s.dir, name, "ed25519", 0)
	s.n.authorize(key + ".pub")
	s.a.mustRun(add[0], append(add[1:], key)...)
	os.Remove(key)
	return key + ".pub"
}

// login logs in along hops with the key pub only (ssh -i pub
// IdentitiesOnly): login(pub, "jump", "target") is
// ssh -A jump 'ssh target echo reached-target'.
func (s *i13aNet) login(pub string, hops ...string) (string, bool) {
	s.t.Helper()
	last := hops[len(hops)-1]
	id := "-o IdentitiesOnly=yes -i " + pub
	cmd := "echo reached-" + last
	for i := len(hops) - 1; i > 0; i-- {
		fwd := ""
		if i < len(hops)-1 {
			fwd = "-A "
		}
		cmd = fmt.Sprintf("ssh -F %s %s %s%s %s", s.n.Config, id, fwd, hops[i], shQuote(cmd))
	}
	args := []string{"-o", "IdentitiesOnly=yes", "-i", pub}
	if len(hops) > 1 {
		args = append(args, "-A")
	}
	out, code := s.n.ssh(s.a, append(args, hops[0], cmd)...)
	return out, code == 0 && strings.Contains(out, "reached-"+last)
}

// cli runs safe-agent against the agent; stdout and stderr apart.
func (s *i13aNet) cli(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return runSplit(s.t, s.a.env(), agentBin(), args...)
}

// explain runs `safe-agent policy explain` against the running agent and
// returns its verdict and rule.
func (s *i13aNet) explain(key string, hops []string, user string) (verdict, rule, out string) {
	s.t.Helper()
	args := []string{"policy", "explain", "--key", key, "--path", strings.Join(hops, ">"), "--user", user}
	out, errOut, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("safe-agent %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "verdict: ") || !strings.HasPrefix(lines[1], "rule:    ") {
		s.t.Fatalf("explain printed:\n%s", out)
	}
	return strings.TrimPrefix(lines[0], "verdict: "), strings.TrimPrefix(lines[1], "rule:    "), out
}

// agentVerdict is what the agent decided, from its audit record: a
// prompt means the policy said confirm.
func agentVerdict(r audit.Record) string {
	switch {
	case r.Prompt != nil:
		return "confirm"
	case r.Decision == audit.DecisionAllowed:
		return "allow"
	}
	return "deny"
}

// lastDecision is the newest decision about the key with this comment:
// its sign record or, through a forwarded agent, the record of the list
// that hid it (the agent hides a key from a path on which the policy
// would refuse it, judged as the login itself, so ssh there never asks).
func lastDecision(recs []audit.Record, comment string) (audit.Record, bool) {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Key == nil || r.Key.Comment != comment {
			continue
		}
		if r.Event == audit.EventSign || r.Event == audit.EventList && r.Decision == audit.DecisionDenied {
			return r, true
		}
	}
	return audit.Record{}, false
}

// TestI13aExplainAgreesWithAgent: the same requests go through the real
// agent (real ssh through real sshd hosts) and through `policy explain`
// talking to that agent; verdict and rule agree, for a key the policy
// file governs, a key added with `safe-agent add --confirm --allow`
// (settings of its own, folded in by both) and one added with ssh-add -c.
func TestI13aExplainAgreesWithAgent(t *testing.T) {
	s := newI13aNet(t, `[defaults]
confirm = "never"
[[key]]
match = "work"
allow = ["jump", "jump>target"]
[[key]]
match = "always"
confirm = "always"
[[key]]
match = "wrok"
allow = ["other"]
`)
	work := s.addKey("work", agentBin(), "add", "--no-store")
	conf := s.addKey("conf", agentBin(), "add", "--no-store", "--confirm", "--allow", "jump", "--allow", "jump>other")
	sshc := s.addKey("sshc", "ssh-add", "-c")
	always := s.addKey("always", "ssh-add")
	user := currentUser(t)

	for _, tc := range []struct {
		key, pub      string
		hops          []string
		verdict, rule string
	}{
		{"work", work, []string{"jump"}, "allow", `key "work" allow[0]`},
		{"work", work, []string{"jump", "target"}, "allow", `key "work" allow[1]`},
		{"work", work, []string{"jump", "other"}, "deny", `key "work" allow`},
		{"conf", conf, []string{"jump"}, "confirm", "stored settings confirm"},
		{"conf", conf, []string{"jump", "target"}, "deny", "stored settings allow"},
		{"conf", conf, []string{"jump", "other"}, "confirm", "stored settings confirm"},
		{"conf", conf, []string{"other"}, "deny", "stored settings allow"},
		{"sshc", sshc, []string{"other"}, "confirm", "stored settings confirm"},
		{"always", always, []string{"target"}, "confirm", `key "always" confirm`},
	} {
		name := tc.key + " " + strings.Join(tc.hops, ">")
		t.Run(name, func(t *testing.T) {
			from := len(readAudit(t, s.a.Audit))
			out, reached := s.login(tc.pub, tc.hops...)
			rec, ok := lastDecision(readAudit(t, s.a.Audit)[from:], tc.key)
			if !ok {
				t.Fatalf("no decision recorded for %s; ssh said:\n%s", tc.key, out)
			}
			if len(rec.Path) != len(tc.hops) {
				t.Fatalf("the last request went %d hops, want %d (an earlier hop refused?): %s %s\n%s", len(rec.Path), len(tc.hops), rec.Rule, rec.Reason, out)
			}
			agentV, agentRule := agentVerdict(rec), rec.Rule
			if agentV != tc.verdict || agentRule != tc.rule {
				t.Errorf("agent decided %s by %q (%s), want %s by %q", agentV, agentRule, rec.Reason, tc.verdict, tc.rule)
			}
			if want := tc.verdict != "deny"; reached != want {
				t.Errorf("login reached the end: %v, want %v\n%s", reached, want, out)
			}
			v, rule, eout := s.explain(tc.key, tc.hops, user)
			if v != agentV || rule != agentRule {
				t.Errorf("explain says %s by %q, the agent decided %s by %q\nexplain:\n%s", v, rule, agentV, agentRule, eout)
			}
		})
	}

	// The prompts said why they asked, in plain words.
	prompts := strings.Join(s.ask.prompts(), "\n")
	for _, want := range []string{
		"Asked because you added this key with --confirm (or ssh-add -c)",
		`Asked because the policy asks for every use ([[key]] match "always": confirm = "always")`,
	} {
		if !strings.Contains(prompts, want) {
			t.Errorf("no prompt says %q:\n%s", want, prompts)
		}
	}
	if strings.Contains(prompts, "policy rule") {
		t.Errorf("a prompt still names a policy rule:\n%s", prompts)
	}

	t.Run("key file gets the stored settings", func(t *testing.T) {
		v, rule, out := s.explain(conf, []string{"jump", "target"}, user)
		if v != "deny" || rule != "stored settings allow" || !strings.Contains(out, "key:     \"conf\" (SHA256:") || !strings.Contains(out, "its own settings: confirm every use; allow jump, jump>other") {
			t.Errorf("explain --key conf.pub:\n%s", out)
		}
	})

	t.Run("unknown key", func(t *testing.T) {
		out, errOut, code := s.cli("policy", "explain", "--key", "nosuch", "--path", "jump")
		if code != 1 || out != "" || !strings.Contains(errOut, `no key matches "nosuch" in the agent on `+s.a.Socket) {
			t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
		}
		_, errOut, code = s.cli("policy", "explain", "--key", "wokr", "--path", "jump")
		if code != 1 || !strings.Contains(errOut, `no key matches "wokr"`) || !strings.Contains(errOut, "did you mean work?") {
			t.Errorf("typo of a comment: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("section matching no key", func(t *testing.T) {
		_, errOut, _ := s.cli("policy", "explain", "--key", "work", "--path", "jump")
		want := `warning: [[key]] match "wrok" matches no key loaded in the agent or stored, so its rules apply to none of them: did you mean work?`
		if !strings.Contains(errOut, want) {
			t.Errorf("explain stderr lacks %q:\n%s", want, errOut)
		}
		out, errOut, code := s.cli("policy", "check")
		if code != 0 || !strings.Contains(errOut, want) {
			t.Errorf("check: exit %d, stderr lacks %q:\n%s", code, want, errOut)
		}
		for _, want := range []string{
			"policy: " + s.policyFile() + "\n",
			"Keys of the agent on " + s.a.Socket + ":\n",
			`"work" (SHA256:`, `): [[key]] match "work"; loaded in the agent; no settings of its own` + "\n",
			`"conf" (SHA256:`, `): [defaults] (no [[key]] matches it); loaded in the agent; its own settings: confirm every use; allow jump, jump>other` + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("check output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("no agent", func(t *testing.T) {
		env := setEnv(s.a.env(), "SSH_AUTH_SOCK="+filepath.Join(s.dir, "none.sock"))
		out, errOut, code := runSplit(t, env, agentBin(), "policy", "explain", "--policy", s.policyFile(), "--key", "conf", "--path", "jump")
		// Without the agent, "conf" is only a comment: no stored
		// settings, so [defaults] (confirm = "never") allows it.
		if code != 0 || !strings.HasPrefix(out, "verdict: allow\n") || !strings.Contains(out, "note: no agent answers on "+filepath.Join(s.dir, "none.sock")) || strings.Contains(errOut, "warning: [[key]]") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
}
