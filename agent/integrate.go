package agent

import (
	"strings"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
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
		Key:        policyKey(r.id, r.what.Cert),
		Settings:   policySettings(r.id),
		Hops:       policyHops(r.hops),
		BindFailed: r.bindFailed,
		// The policy refuses to trust a claimed destination for a plain
		// publickey login through a forwarded agent.
		NotHostbound: r.what.Kind == SignLogin && r.what.Method != MethodPublicKeyHostbound,
		User:         r.what.User,
		Namespace:    r.what.Namespace,
		Now:          a.srv.now(),
		Client:       a.requestClient(),
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

// requestClient is the connection's process chain as the policy should
// see it now: when client rules are in force, the pid is checked to
// still belong to the process read at connect, running the same program;
// if not, the chain is unreadable ("process gone") and matches no client
// pattern.
func (a *connAgent) requestClient() *policy.Client {
	c := a.peer.Client
	if c == nil || !a.srv.policy().HasClientRules() {
		return c
	}
	if why := peerChanged(&a.peer); why != "" {
		return &policy.Client{Unreadable: why}
	}
	return c
}

// policyKey describes a key to the policy, with the user certificate it
// is used with: its own when the agent holds a certificate, else the one
// a login names for it (a certificate file; classify has checked that it
// certifies exactly this key). CertOf checks the CA's signature; a
// certificate that fails it selects no certificate rules.
func policyKey(id *Identity, named *ssh.Certificate) policy.Key {
	k := policy.Key{Fingerprint: id.Fingerprint, Comment: id.Comment, Type: id.Type()}
	switch {
	case id.Cert() != nil:
		k.Cert = id.policyCert()
	case named != nil:
		k.Cert, _ = policy.CertOf(named)
	}
	return k
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

// visible says whether a list request on this connection shows a key, and
// if not, by which rule: ssh-add -h keys follow OpenSSH's rule, and from a
// forwarded connection (or one whose bind failed) only keys the policy
// would let this path use are shown.
func (a *connAgent) visible(id *Identity) (bool, policy.Decision) {
	if id.Dest != nil && !id.Dest.VisibleOnList(&a.bind) {
		return false, policy.Decision{Verdict: policy.Deny, Rule: "ssh-add -h",
			Reason: "Refused: the key was added with ssh-add -h, and its destination constraints do not permit this path."}
	}
	if !forwarded(a.bind.Hops) && !a.bind.Failed {
		return true, policy.Decision{}
	}
	return a.srv.policy().Visible(policy.Request{
		Key:        policyKey(id, nil),
		Settings:   policySettings(id),
		Hops:       policyHops(a.bind.Hops),
		BindFailed: a.bind.Failed,
		Now:        a.srv.now(),
		Client:     a.peer.Client,
	})
}

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
		a.record("bind-failed", audit.Record{Event: "bind-failed", Decision: "denied", Reason: err.Error(),
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
	tail := ""
	if bindFailed {
		tail = failedBindTail
	}
	return strings.Join(s.pathParts(hops, tail), " → ")
}

const failedBindTail = "? (failed session-bind)"

// pathParts is the path as a list: "here", each hop, then tail (a
// destination the connection did not bind) if not "".
func (s *Server) pathParts(hops []Hop, tail string) []string {
	out := make([]string, 0, len(hops)+2)
	out = append(out, "here")
	for _, h := range hops {
		n := s.hopName(h)
		if h.Forwarded {
			n += " (forwarded)"
		}
		out = append(out, n)
	}
	if tail != "" {
		out = append(out, tail)
	}
	return out
}

// requestPath is a sign request's path as people are shown it. A login
// whose destination the connection did not bind ends in "?": after a
// forwarding hop (the far side sent no bind for it), after a failed bind,
// and for a plain "publickey" login through a forwarded agent, whose last
// bind is only a claim (that hop is shown as the claim, not the
// destination).
func (s *Server) requestPath(r *signRequest) (hops []Hop, tail string) {
	hops = r.hops
	n := len(hops)
	switch {
	case r.bindFailed:
		return hops, failedBindTail
	case r.what.Kind != SignLogin:
		return hops, ""
	case n > 0 && hops[n-1].Forwarded:
		return hops, "?"
	case r.claimOnly():
		return hops[:n-1], "? (not host-bound; bound to " + s.hopName(hops[n-1]) + ")"
	}
	return hops, ""
}

// requestPathText is requestPath in one line.
func (s *Server) requestPathText(r *signRequest) string {
	return strings.Join(s.pathParts(s.requestPath(r)), " → ")
}

// requestDest names where a login goes: its bound destination, else "".
func (s *Server) requestDest(r *signRequest) string {
	hops, tail := s.requestPath(r)
	if tail != "" || len(hops) == 0 {
		return ""
	}
	return s.hopName(hops[len(hops)-1])
}

// notifyHidden tells the person that a list through a forwarded agent hid
// a key, as a refused signature is told (policy notify setting).
func (s *Server) notifyHidden(a *connAgent, id *Identity, why policy.Decision) {
	if s.opts.Notifier == nil || !notify.ShouldNotify(string(s.policy().NotifyMode()), true, true) {
		return
	}
	p := notify.Prompt{KeyComment: id.Comment, KeyFingerprint: id.Fingerprint, Purpose: "list keys (the key was hidden)",
		Path: s.pathParts(a.bind.Hops, ""), Process: a.peer.Chain}
	title, body := notify.Notice(p, false, why.Reason)
	s.opts.Notifier.Notify(title, body)
}
