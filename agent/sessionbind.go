package agent

import (
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// sessionBind handles session-bind@openssh.com: verify and record a hop.
// A failed bind answers SSH_AGENT_FAILURE, as OpenSSH does, and marks the
// connection for good.
func (a *connAgent) sessionBind(contents []byte) error {
	if err := a.bind.ApplyPayload(contents); err != nil {
		// The first failure is recorded; later ones on the same
		// connection (it is already untrusted) are counted.
		if a.recs.bindFails++; a.recs.bindFails > 1 {
			a.repeat("bind-failed")
			return sshagent.ErrExtensionUnsupported
		}
		a.log.Warn("session-bind refused; connection is no longer trusted", "err", err, "process", a.peer.Chain)
		a.record("bind-failed", audit.Record{Event: audit.EventBindFailed, Decision: audit.DecisionDenied, Reason: err.Error(),
			Client: a.auditClient(), Path: a.srv.auditPath(a.bind.Hops)})
		return sshagent.ErrExtensionUnsupported
	}
	a.upstreamBind(contents)
	if a.srv.opts.Debug {
		h := a.bind.Hops[len(a.bind.Hops)-1]
		a.log.Debug("session-bind", "host", a.srv.hopName(h), "forwarded", h.Forwarded, "hops", len(a.bind.Hops))
	}
	return nil
}
