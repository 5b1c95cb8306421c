package agent

import (
	"strings"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// policy returns the policy in force.
func (s *Server) policy() *policy.Policy {
	if s.opts.Policy != nil {
		return s.opts.Policy.Get()
	}
	return s.defaultPolicy
}

// policyRequest describes a sign request to the policy engine.
func (a *connAgent) policyRequest(r *signRequest) policy.Request {
	req := policy.Request{
		Key:        policy.Key{Fingerprint: r.id.Fingerprint, Comment: r.id.Comment, Type: r.id.Type()},
		Settings:   policySettings(r.id),
		Hops:       policyHops(r.hops),
		BindFailed: r.bindFailed,
		User:       r.what.User,
		Namespace:  r.what.Namespace,
		Now:        a.srv.now(),
	}
	switch r.what.Kind {
	case SignLogin:
		req.Purpose = policy.PurposeLogin
	case SignSSHSIG:
		req.Purpose = policy.PurposeSSHSIG
	default:
		req.Purpose = policy.PurposeOpaque
	}
	return req
}

func policySettings(id *Identity) policy.Settings {
	return policy.Settings{
		Confirm:         id.Confirm,
		Allow:           id.Settings.Allow,
		Deny:            id.Settings.Deny,
		MaxForwardDepth: id.Settings.MaxForwardDepth,
	}
}

func policyHops(hops []Hop) []policy.Hop {
	out := make([]policy.Hop, len(hops))
	for i, h := range hops {
		out[i] = policy.Hop{HostKey: h.HostKey, Forwarded: h.Forwarded}
	}
	return out
}

func forwarded(hops []Hop) bool {
	for _, h := range hops {
		if h.Forwarded {
			return true
		}
	}
	return false
}

// visible says whether a list request on this connection shows a key:
// ssh-add -h keys follow OpenSSH's rule, and from a forwarded connection
// only keys the policy would let this path use are shown.
func (a *connAgent) visible(id *Identity) bool {
	if id.Dest != nil && !id.Dest.VisibleOnList(&a.bind) {
		return false
	}
	if !forwarded(a.bind.Hops) && !a.bind.Failed {
		return true
	}
	k := policy.Key{Fingerprint: id.Fingerprint, Comment: id.Comment, Type: id.Type()}
	return a.srv.policy().Visible(k, policySettings(id), policyHops(a.bind.Hops))
}

// sessionBind handles session-bind@openssh.com: verify and record a hop.
// A failed bind answers SSH_AGENT_FAILURE, as OpenSSH does, and marks the
// connection for good.
func (a *connAgent) sessionBind(contents []byte) error {
	if err := a.bind.ApplyPayload(contents); err != nil {
		a.log.Warn("session-bind refused; connection is no longer trusted", "err", err, "process", a.peer.Chain)
		a.srv.auditEvent(audit.Record{Event: "bind-failed", Decision: "denied", Reason: err.Error(),
			Client: a.auditClient(), Path: a.srv.auditPath(a.bind.Hops)})
		return sshagent.ErrExtensionUnsupported
	}
	if a.srv.opts.Debug {
		h := a.bind.Hops[len(a.bind.Hops)-1]
		a.log.Debug("session-bind", "host", a.srv.hopName(h), "forwarded", h.Forwarded, "hops", len(a.bind.Hops))
	}
	return nil
}

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
func (s *Server) auditPath(hops []Hop) []audit.Hop {
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

// hopName is how people see a host: its known_hosts name, else its
// host-key fingerprint (never a raw hash).
func (s *Server) hopName(h Hop) string {
	if names := s.policy().HostNames(h.HostKey); len(names) > 0 {
		return names[0]
	}
	return hostFingerprint(h.HostKey)
}

// pathText is the path as people read it: "here → jump (forwarded) → db".
func (s *Server) pathText(hops []Hop, bindFailed bool) string {
	var b strings.Builder
	b.WriteString("here")
	for _, h := range hops {
		b.WriteString(" → ")
		b.WriteString(s.hopName(h))
		if h.Forwarded {
			b.WriteString(" (forwarded)")
		}
	}
	if bindFailed {
		b.WriteString(" → ? (failed session-bind)")
	}
	return b.String()
}
