package main

import (
	"fmt"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
)

// agentLockedNote is what list says about a locked agent: the agent
// refuses to list keys then, which the protocol can only report as a
// "generic extension failure".
const agentLockedNote = "the agent is locked: unlock it with `safe-agent unlock` or `ssh-add -X`"

// agentListNote explains why the agent on socket did not list its keys
// (err): locked, which its status says, or err itself.
func agentListNote(ag sshagent.ExtendedAgent, socket string, err error) string {
	var st agent.Status
	if serr := agentJSON(ag, agent.ExtStatus, &st); serr == nil && st.Locked {
		return fmt.Sprintf("agent on %s: %s", socket, agentLockedNote)
	}
	return fmt.Sprintf("agent on %s: %v", socket, err)
}
