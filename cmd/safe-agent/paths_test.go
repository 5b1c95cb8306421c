package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/keystore"
)

// The flag wins, then the environment, then the default; only a default
// policy file may be missing.
func TestPathResolution(t *testing.T) {
	run, cfg, state := t.TempDir(), t.TempDir(), t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("SAFE_AGENT_POLICY", "")

	def := filepath.Join(run, "safe-agent", "agent.sock")
	if got := defaultSocket(); got != def {
		t.Errorf("defaultSocket() = %q, want %q", got, def)
	}
	if got := agentSocket(""); got != def {
		t.Errorf("agentSocket with nothing set = %q, want %q", got, def)
	}
	t.Setenv("SSH_AUTH_SOCK", "/tmp/env.sock")
	if got := agentSocket(""); got != "/tmp/env.sock" {
		t.Errorf("agentSocket = %q, want $SSH_AUTH_SOCK", got)
	}
	if got := agentSocket("/tmp/flag.sock"); got != "/tmp/flag.sock" {
		t.Errorf("agentSocket = %q, want --socket", got)
	}

	p, explicit, err := policyPath("")
	if err != nil || p != filepath.Join(cfg, "safe-agent", "policy.toml") || explicit {
		t.Errorf("policyPath default = %q, %v, %v", p, explicit, err)
	}
	t.Setenv("SAFE_AGENT_POLICY", "/etc/env.toml")
	if p, explicit, _ := policyPath(""); p != "/etc/env.toml" || !explicit {
		t.Errorf("policyPath with $SAFE_AGENT_POLICY = %q, %v", p, explicit)
	}
	if p, explicit, _ := policyPath("/etc/flag.toml"); p != "/etc/flag.toml" || !explicit {
		t.Errorf("policyPath with --policy = %q, %v", p, explicit)
	}

	if a, err := auditLogPath(""); err != nil || a != filepath.Join(state, "safe-agent", "audit.jsonl") {
		t.Errorf("auditLogPath default = %q, %v", a, err)
	}
	if a, _ := auditLogPath("/var/log/a.jsonl"); a != "/var/log/a.jsonl" {
		t.Errorf("auditLogPath with --audit-log = %q", a)
	}
}

// main prints the error, then what to do on a line of its own.
func TestPrintErrorHint(t *testing.T) {
	var b bytes.Buffer
	err := fmt.Errorf("open audit log: %w", hint.Wrap(errors.New("permission denied"), "fix its permissions\nor choose another --audit-log"))
	printError(&b, "safe-agent", err)
	want := "safe-agent: open audit log: permission denied\nhint: fix its permissions\n      or choose another --audit-log\n"
	if b.String() != want {
		t.Errorf("printed\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	printError(&b, "ssh-agent", errors.New("no hint"))
	if b.String() != "ssh-agent: no hint\n" {
		t.Errorf("printed %q", b.String())
	}
}

// A detached agent's error and hint survive the ready pipe.
func TestReadyErrorKeepsHint(t *testing.T) {
	rest := bufio.NewReader(strings.NewReader("hint: stop it first\n"))
	err := readyError("error: an agent is already running on /s", rest)
	if err.Error() != "an agent is already running on /s" || hint.Of(err) != "stop it first" {
		t.Errorf("readyError = %q, hint %q", err, hint.Of(err))
	}
	err = readyError("agent exited before it was ready", bufio.NewReader(strings.NewReader("")))
	if err.Error() != "agent exited before it was ready" || hint.Of(err) != "" {
		t.Errorf("readyError = %q, hint %q", err, hint.Of(err))
	}
}

// An unknown --keystore names the flag and the choices; the agent's
// advice for a keyring it cannot reach keeps the keystore's own hint and
// names the flag that does without it.
func TestKeystoreFlagErrors(t *testing.T) {
	_, err := newKeystore("vault", nil)
	if err == nil || err.Error() != `--keystore: unknown keystore "vault": use keyring or none` {
		t.Errorf("newKeystore(vault) = %v", err)
	}
	unavailable := fmt.Errorf("load keys: %w", hint.Wrap(fmt.Errorf("no Secret Service: %w", keystore.ErrUnavailable), "start gnome-keyring-daemon"))
	got := keystoreAdvice(unavailable)
	want := "start gnome-keyring-daemon; keys added with ssh-add still work, and stored keys load as soon as the keyring is available (or run with --keystore none)"
	if got != want {
		t.Errorf("keystoreAdvice =\n%q\nwant\n%q", got, want)
	}
}
