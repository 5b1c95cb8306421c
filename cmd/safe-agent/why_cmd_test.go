package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

func TestSplitFix(t *testing.T) {
	for _, tc := range []struct{ in, what, fix string }{
		{`Refused: key "w" may not log in to db.internal (here → db.internal): not allowed. To permit it, add "db.internal" in /p.toml.`,
			`Refused: key "w" may not log in to db.internal (here → db.internal): not allowed.`, `To permit it, add "db.internal" in /p.toml.`},
		// A sentence end inside a quoted comment is not one.
		{`Refused: key "a. B" may not sign. Run it here instead.`, `Refused: key "a. B" may not sign.`, "Run it here instead."},
		{`Refused: key "a\". B" may not. X.`, `Refused: key "a\". B" may not.`, "X."},
		{"Ask first: confirm = \"always\"; not confirmed (the person said no)", "Ask first: confirm = \"always\"; not confirmed (the person said no)", ""},
		{"ends with a dot. lower case goes on", "ends with a dot. lower case goes on", ""},
		{"", "", ""},
	} {
		what, fix := splitFix(tc.in)
		if what != tc.what || fix != tc.fix {
			t.Errorf("splitFix(%q) = %q, %q; want %q, %q", tc.in, what, fix, tc.what, tc.fix)
		}
	}
}

func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{
		"work":           "work",
		"you@laptop":     "you@laptop",
		"jump>target":    "'jump>target'",
		"it's":           `'it'\''s'`,
		"":               "''",
		"a b":            "'a b'",
		"SHA256:ab+c/d=": "SHA256:ab+c/d=",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPrintRefusalEscapes: a user name from a client cannot rewrite the
// terminal.
func TestPrintRefusalEscapes(t *testing.T) {
	r := audit.Record{Time: time.Unix(1000, 0), Event: audit.EventSign, Decision: audit.DecisionDenied, Rule: "defaults allow",
		Reason:  "Refused: no. Add it.",
		Key:     &audit.Key{Fingerprint: "SHA256:x", Comment: "k"},
		Purpose: &audit.Purpose{Kind: audit.PurposeLogin, User: "\x1b[2Jroot"},
		Path:    []audit.Hop{{Names: []string{"db"}}}}
	var b bytes.Buffer
	printRefusal(&b, describeRefusal(r), time.Unix(1060, 0))
	out := b.String()
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("escape reached the terminal: %q", out)
	}
	for _, want := range []string{"(1m00s ago): refused a login as \\x1b[2Jroot to db\n", "  fix:     Add it.\n", "  check:   safe-agent policy explain --key k --path db --user '\x1b[2Jroot'"} {
		if !strings.Contains(out, strings.ReplaceAll(want, "\x1b", `\x1b`)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusPrompt: status prints what the agent reports about its
// prompt and policy.
func TestStatusPrompt(t *testing.T) {
	var b bytes.Buffer
	printPromptStatus(&b, agent.PromptStatus{PromptSetting: "auto", PromptError: "cannot ask: no display"})
	if got := b.String(); !strings.HasPrefix(got, "prompt:    NONE (prompt = \"auto\"): cannot ask: no display\n") {
		t.Errorf("broken prompt: %q", got)
	}
	b.Reset()
	printPromptStatus(&b, agent.PromptStatus{})
	if b.Len() != 0 {
		t.Errorf("an older agent that reports nothing: %q", b.String())
	}
}

// TestCheckPromptFromAgent: doctor takes the agent's word over its own
// environment, which here could show a prompt.
func TestCheckPromptFromAgent(t *testing.T) {
	env := doctorEnv{environ: []string{"SSH_ASKPASS=/bin/true"}}
	p := policy.Default()
	if r := checkPrompt(env, p, nil); r.Status != checkOK {
		t.Fatalf("own environment: %v %s", r.Status, r.Msg)
	}
	st := &agent.Status{PID: 42, PromptStatus: agent.PromptStatus{PromptSetting: "auto", PromptError: "cannot ask: SSH_ASKPASS: stat /x: no such file or directory"}}
	r := checkPrompt(env, p, st)
	if r.Status != checkFail || r.Msg != `prompt = "auto": cannot ask: SSH_ASKPASS: stat /x: no such file or directory: every use that needs a confirmation is refused` ||
		!strings.Contains(r.Fix, "restart the agent") || len(r.Notes) != 1 || r.Notes[0] != "checked by the running agent (pid 42), in its own environment" {
		t.Errorf("agent with a broken prompt: %+v", r)
	}
	st.PromptError, st.Prompt = "", "askpass /usr/bin/ssh-askpass"
	if r := checkPrompt(env, p, st); r.Status != checkOK || r.Msg != "confirmations are asked with askpass /usr/bin/ssh-askpass" {
		t.Errorf("agent with a prompt: %+v", r)
	}
}
