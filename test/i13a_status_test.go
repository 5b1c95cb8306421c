package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestI13aPromptThroughAgent: an agent started with a broken SSH_ASKPASS
// refuses every confirmation. doctor, run from a shell whose own
// environment could show a prompt, must still FAIL "prompt" (it asks the
// agent), status must say the agent has no prompt, and why must say what
// to do about the refusal.
func TestI13aPromptThroughAgent(t *testing.T) {
	ask := newFakeAskpass(t)
	ask.answer("yes")
	a := startAgent(t, agentOpts{policy: "[defaults]\nconfirm = \"always\"\n", env: []string{"SSH_ASKPASS=/nonexistent/askpass"}})
	dir := t.TempDir()
	key := newKey(t, dir, "work", "ed25519", 0)
	a.mustRun("ssh-add", key)
	os.Remove(key) // only the agent can sign
	goodEnv := append(a.env(), "SSH_ASKPASS="+ask.Path)

	// The agent really refuses: it cannot ask.
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("hello"), 0o600)
	if out, code := runEnv(t, goodEnv, "", "ssh-keygen", "-Y", "sign", "-f", key+".pub", "-n", "file", msg); code == 0 {
		t.Fatalf("the agent signed without a prompt it cannot show:\n%s", out)
	}

	out, _ := runDoctor(t, goodEnv, nil)
	lines := checkLines(out)
	if lines["prompt"] != "FAIL" {
		t.Errorf("doctor prompt: %q, want FAIL:\n%s", lines["prompt"], out)
	}
	for _, want := range []string{
		`prompt = "auto": cannot ask: SSH_ASKPASS: stat /nonexistent/askpass: no such file or directory`,
		"every use that needs a confirmation is refused",
		"note: checked by the running agent (pid ",
		"correct it there and restart the agent",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	// Without the agent, doctor checks its own (good) environment: ok.
	out, _ = runDoctor(t, setEnv(goodEnv, "SSH_AUTH_SOCK="+filepath.Join(dir, "none.sock")), nil)
	if lines := checkLines(out); lines["prompt"] != "ok" || !strings.Contains(out, "confirmations are asked with askpass "+ask.Path) {
		t.Errorf("doctor without an agent, prompt %q:\n%s", lines["prompt"], out)
	}

	out, code := runEnv(t, goodEnv, "", agentBin(), "status")
	if code != 0 || !strings.Contains(out, "prompt:    NONE (prompt = \"auto\"): cannot ask: SSH_ASKPASS: stat /nonexistent/askpass: no such file or directory") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}

	out, code = runEnv(t, goodEnv, "", agentBin(), "why", "-n", "1")
	for _, want := range []string{
		"refused an SSHSIG signature (ssh-keygen -Y sign, namespace \"file\")",
		"cannot ask: SSH_ASKPASS: stat /nonexistent/askpass: no such file or directory",
		"  fix:     no prompt could be shown: run `safe-agent doctor`, which checks the prompt the agent uses\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("why (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
}

// TestI13aStatusDefaultsAndPrompt: with no policy file the agent runs the
// built-in defaults, and status says so; it names the prompt program the
// agent resolved in its own environment, not the caller's.
func TestI13aStatusDefaultsAndPrompt(t *testing.T) {
	ask := newFakeAskpass(t)
	a := startAgent(t, agentOpts{env: []string{"SSH_ASKPASS=" + ask.Path}})
	// The caller names another program: the agent's is the one shown.
	out, code := runEnv(t, append(a.env(), "SSH_ASKPASS=/usr/bin/false"), "", agentBin(), "status")
	policyFile := filepath.Join(filepath.Dir(a.Home), "config", "safe-agent", "policy.toml")
	for _, want := range []string{
		"policy:    " + policyFile + " does not exist: the built-in defaults apply (confirm forwarded use, at most 1 forwarding hop; `safe-agent policy check` shows them)\n",
		"prompt:    askpass " + ask.Path + " (prompt = \"auto\", in the agent's environment)\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	out, _ = runEnv(t, a.env(), "", agentBin(), "status", "--json")
	var st struct {
		PolicyDefaults bool   `json:"policy_defaults"`
		Prompt         string `json:"prompt"`
		PromptError    string `json:"prompt_error"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if !st.PolicyDefaults || st.Prompt != "askpass "+ask.Path || st.PromptError != "" {
		t.Errorf("status --json: %+v\n%s", st, out)
	}
}
