package agent

// Audit glue: how the agent describes connections and paths in audit
// records.

import (
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
)

func (a *connAgent) auditClient() *audit.Client {
	return &audit.Client{PID: a.peer.PID, UID: a.peer.UID, Exe: a.peer.Exe, Chain: a.peer.Chain}
}

// auditEvent appends a non-sign record; a failure is logged (the event
// itself already happened).
func (s *Server) auditEvent(rec audit.Record) {
	if s.opts.Audit == nil {
		return
	}
	if err := s.opts.Audit.Append(rec); err != nil {
		s.log.Error("audit log write failed", "event", rec.Event, "err", err)
	}
}

// auditPath describes hops for the audit log.
func (s *Server) auditPath(hops []sshwire.Hop) []audit.Hop {
	if len(hops) == 0 {
		return nil
	}
	pol := s.policy()
	out := make([]audit.Hop, len(hops))
	for i, h := range hops {
		out[i] = audit.Hop{Names: pol.HostNames(h.HostKey), Fingerprint: hostFingerprint(h.HostKey), Forwarded: h.Forwarded}
	}
	return out
}

func hostFingerprint(k ssh.PublicKey) string {
	if c, ok := k.(*ssh.Certificate); ok {
		return ssh.FingerprintSHA256(c.Key)
	}
	return ssh.FingerprintSHA256(k)
}
