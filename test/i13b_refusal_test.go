package test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// refusalSetup is an agent holding two keys, both added with ssh-add -c,
// both authorized on a real sshd, and a fake askpass that answers no.
type refusalSetup struct {
	n      *sshNet
	a      *agentProc
	ask    *fakeAskpass
	fp1    string
	fp2    string
	policy string
}

func newRefusalSetup(t *testing.T, extra string) *refusalSetup {
	t.Helper()
	n := newSSHNet(t, "target")
	ask := newFakeAskpass(t)
	pol := n.policy(fmt.Sprintf("prompt = %q\nconfirm_timeout = \"5s\"\n%s", ask.Path, extra))
	a := startAgent(t, agentOpts{policy: pol})
	dir := t.TempDir()
	k1 := newKey(t, dir, "first", "ed25519", 0)
	k2 := newKey(t, dir, "second", "ed25519", 0)
	n.authorize(k1 + ".pub")
	n.authorize(k2 + ".pub")
	a.mustRun("ssh-add", "-c", k1, k2)
	os.Remove(k1)
	os.Remove(k2)
	return &refusalSetup{n: n, a: a, ask: ask, fp1: pubFingerprint(t, k1+".pub"), fp2: pubFingerprint(t, k2+".pub"), policy: pol}
}

// deniedSigns are the audit log's refused sign records.
func deniedSigns(t *testing.T, path string) []audit.Record {
	var out []audit.Record
	for _, r := range readAudit(t, path) {
		if r.Event == "sign" && r.Decision == "denied" {
			out = append(out, r)
		}
	}
	return out
}

// TestI13bRefusalRemembered: the person refuses the prompt for the first
// key; ssh offers the second key on the same agent connection, and that
// request is refused at once, without a second prompt, with its own audit
// record saying why.
func TestI13bRefusalRemembered(t *testing.T) {
	s := newRefusalSetup(t, "")
	out, code := s.n.ssh(s.a, "target", "echo", "reached")
	if code == 0 || strings.Contains(out, "reached") {
		t.Fatalf("login succeeded although the prompt was refused (exit %d):\n%s", code, out)
	}
	if p := s.ask.prompts(); len(p) != 1 {
		t.Fatalf("the person was asked %d times, want exactly once:\n%s", len(p), strings.Join(p, "\n-----\n"))
	}
	recs := deniedSigns(t, s.a.Audit)
	if len(recs) != 2 {
		t.Fatalf("%d refused sign records, want 2 (one per key):\n%v", len(recs), recs)
	}
	first, second := recs[0], recs[1]
	if first.Key == nil || first.Key.Fingerprint != s.fp1 || first.Prompt == nil || first.Prompt.Outcome != "no" ||
		!strings.Contains(first.Reason, "the person said no") {
		t.Errorf("first refusal = %+v (prompt %+v), want key %s refused by the person at the prompt", first, first.Prompt, s.fp1)
	}
	if second.Key == nil || second.Key.Fingerprint != s.fp2 {
		t.Errorf("second refusal is for key %+v, want %s", second.Key, s.fp2)
	}
	if second.Prompt != nil {
		t.Errorf("second refusal shows a prompt (%+v): the person must not be asked again", second.Prompt)
	}
	if second.Rule != "refusal_memory" || !strings.HasPrefix(second.Reason, "you refused a request on this connection 0s ago") {
		t.Errorf("second refusal: rule %q reason %q, want rule refusal_memory, reason \"you refused a request on this connection 0s ago…\"", second.Rule, second.Reason)
	}
	if second.Client == nil || first.Client == nil || second.Client.PID != first.Client.PID {
		t.Errorf("both refusals must come from the same ssh: %+v vs %+v", first.Client, second.Client)
	}

	// The memory is per connection: the next ssh is asked again.
	s.ask.answer("yes")
	if out, code := s.n.ssh(s.a, "target", "echo", "reached"); code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("a new connection after the refusal was not asked again, or not allowed on yes (exit %d):\n%s", code, out)
	}
	if p := s.ask.prompts(); len(p) != 2 {
		t.Fatalf("asked %d times in all, want 2 (one per connection)", len(p))
	}
}

// TestI13bRefusalMemoryOff: refusal_memory = "0s" asks for each key, as
// before; a setting out of range is refused by policy check.
func TestI13bRefusalMemoryOff(t *testing.T) {
	s := newRefusalSetup(t, "refusal_memory = \"0s\"\n")
	if out, code := s.n.ssh(s.a, "target", "true"); code == 0 {
		t.Fatalf("login succeeded although both prompts were refused:\n%s", out)
	}
	if p := s.ask.prompts(); len(p) != 2 {
		t.Fatalf("with refusal_memory = \"0s\" the person was asked %d times, want 2 (once per key)", len(p))
	}
	for _, r := range deniedSigns(t, s.a.Audit) {
		if r.Rule == "refusal_memory" {
			t.Errorf("refusal_memory = \"0s\" still refused from memory: %+v", r)
		}
	}

	pf := t.TempDir() + "/policy.toml"
	os.WriteFile(pf, []byte("refusal_memory = \"1h\"\n"), 0o600)
	out, code := s.a.run(agentBin(), "policy", "check", pf)
	if code == 0 || !strings.Contains(out, `refusal_memory must be between "0s" (off) and "10m"`) {
		t.Errorf("policy check of refusal_memory = \"1h\": exit %d\n%s", code, out)
	}
}
