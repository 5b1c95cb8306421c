package main

import (
	"fmt"
	"os"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/policy"
)

// Where every command finds the agent's socket, the policy file and the
// audit log: one place, so `serve` and the commands that talk to it or
// read its files never disagree.

// defaultSocket is where `serve` listens when no --socket is given.
func defaultSocket() string { return agent.DefaultSocketPath() }

// agentSocket is where the CLI finds the running agent: --socket, then
// SSH_AUTH_SOCK, then the default path.
func agentSocket(flag string) string {
	if flag != "" {
		return flag
	}
	if s := os.Getenv("SSH_AUTH_SOCK"); s != "" {
		return s
	}
	return defaultSocket()
}

// policyPath picks the policy file: --policy, then $SAFE_AGENT_POLICY,
// then the default path. explicit reports whether the person chose it
// (then a missing file is an error).
func policyPath(flag string) (path string, explicit bool, err error) {
	if flag != "" {
		return flag, true, nil
	}
	if env := os.Getenv("SAFE_AGENT_POLICY"); env != "" {
		return env, true, nil
	}
	path, err = policy.DefaultPath()
	if err != nil {
		return "", false, hint.Wrap(fmt.Errorf("policy location: %w", err), "name the policy file (--policy, or $SAFE_AGENT_POLICY)")
	}
	return path, false, nil
}

// auditLogPath is --audit-log, else the default audit log.
func auditLogPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	p, err := audit.DefaultPath()
	if err != nil {
		return "", hint.Wrap(fmt.Errorf("audit log location: %w", err), "name the file with --audit-log")
	}
	return p, nil
}
