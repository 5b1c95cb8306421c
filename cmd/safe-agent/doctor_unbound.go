package main

import (
	"fmt"
	"strings"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/termtext"
)

// checkUnboundClients warns when the running agent has signed logins for
// programs that send no session-bind@openssh.com (OpenSSH before 8.9, Go's
// x/crypto ssh, Paramiko…) while some key relies on destination rules. If
// such a program forwards the agent, requests from the far side look local
// to safe-agent: nothing in the protocol can show otherwise.
func checkUnboundClients(st *agent.Status) checkResult {
	r := checkResult{Name: "clients"}
	switch {
	case st == nil:
		r.Status, r.Msg = checkSkip, "no running agent to ask"
		return r
	case len(st.UnboundClients) == 0:
		r.Msg = "every login signed so far came from a client that names its destination (session-bind, OpenSSH 8.9+)"
		return r
	}
	names := make([]string, 0, len(st.UnboundClients))
	for _, c := range st.UnboundClients {
		names = append(names, fmt.Sprintf("%s (%d logins, last %s)", termtext.Escape(c.Exe), c.Logins, c.LastSeen.Local().Format("2006-01-02 15:04")))
	}
	if st.RestrictedKeys == 0 {
		r.Msg = "some programs sign logins without session-bind; no loaded key has an allow list, so nothing relies on it"
		r.Notes = names
		return r
	}
	r.Status = checkWarn
	r.Msg = fmt.Sprintf("%d loaded key(s) have allow lists, but these programs signed logins without session-bind: if one of them forwards the agent (ssh -A), requests from the far side look local and destination rules cannot hold: %s",
		st.RestrictedKeys, strings.Join(names, "; "))
	r.Fix = "use OpenSSH 8.9 or newer for anything that forwards the agent; do not forward the agent with other clients (Paramiko, Go x/crypto, PuTTY), or make those keys ask first (confirm = \"always\")"
	return r
}
