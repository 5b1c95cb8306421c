package agent

// Path text: how people are shown the hosts a request came through.

import (
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/policy"
)

// hopName is how people see a host: its known_hosts name, else its
// host-key fingerprint (never a raw hash).
func (s *Server) hopName(h sshwire.Hop) string {
	if names := s.policy().HostNames(h.HostKey); len(names) > 0 {
		return names[0]
	}
	return hostFingerprint(h.HostKey)
}

// pathText is a connection's path as people read it: "here → jump
// (forwarded) → db".
func (s *Server) pathText(hops []sshwire.Hop, bindFailed bool) string {
	return s.connPath(hops, bindFailed).Long()
}

// connPath is a connection's path: its hops, then "?" when a bind on it
// failed (the hops after that are unknown).
func (s *Server) connPath(hops []sshwire.Hop, bindFailed bool) policy.Path {
	p := policy.Path{Hops: make([]policy.PathHop, len(hops))}
	for i, h := range hops {
		p.Hops[i] = policy.PathHop{Name: s.hopName(h), Forwarded: h.Forwarded}
	}
	if bindFailed {
		p.Tail = policy.TailBindFailed
	}
	return p
}

// requestPath is a sign request's path as people are shown it. A login
// whose destination the connection did not bind ends in "?": after a
// forwarding hop (the far side sent no bind for it), after a failed bind,
// and for a plain "publickey" login through a forwarded agent, whose last
// bind is only a claim (that hop is shown as the claim, not the
// destination).
func (s *Server) requestPath(r *signRequest) policy.Path {
	n := len(r.hops)
	switch {
	case r.bindFailed || r.what.Purpose != policy.PurposeLogin:
		return s.connPath(r.hops, r.bindFailed)
	case n > 0 && r.hops[n-1].Forwarded:
		p := s.connPath(r.hops, false)
		p.Tail = policy.TailUnknown
		return p
	case r.claimOnly():
		p := s.connPath(r.hops[:n-1], false)
		p.Tail, p.BoundTo = policy.TailNotHostbound, s.hopName(r.hops[n-1])
		return p
	}
	return s.connPath(r.hops, false)
}

// requestPathText is requestPath in one line.
func (s *Server) requestPathText(r *signRequest) string {
	return s.requestPath(r).Long()
}
