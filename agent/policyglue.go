package agent

// Policy glue: how the agent describes a request to the policy engine and
// applies what it decides.

import (
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
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
		Settings:   r.id.Settings,
		Hops:       policyHops(r.hops),
		BindFailed: r.bindFailed,
		// The policy refuses to trust a claimed destination for a plain
		// publickey login through a forwarded agent.
		NotHostbound: r.what.Purpose == policy.PurposeLogin && r.what.Method != sshwire.MethodPublicKeyHostbound,
		Purpose:      r.what.Purpose,
		User:         r.what.User,
		Namespace:    r.what.Namespace,
		Now:          a.srv.now(),
		Client:       a.requestClient(),
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
func policyKey(id *identity, named *ssh.Certificate) policy.Key {
	k := policy.Key{Fingerprint: id.Fingerprint, Comment: id.Comment, Type: id.Type()}
	switch {
	case id.Cert() != nil:
		k.Cert = id.policyCert()
	case named != nil:
		k.Cert, _ = policy.CertOf(named)
	}
	return k
}

func policyHops(hops []sshwire.Hop) []policy.Hop {
	out := make([]policy.Hop, len(hops))
	for i, h := range hops {
		out[i] = policy.Hop{HostKey: h.HostKey, Forwarded: h.Forwarded}
	}
	return out
}

func forwarded(hops []sshwire.Hop) bool {
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
func (a *connAgent) visible(id *identity) (bool, policy.Decision) {
	if id.Dest != nil && !id.Dest.VisibleOnList(&a.bind) {
		return false, policy.Decision{Verdict: policy.Deny, Rule: "ssh-add -h",
			Reason: "Refused: the key was added with ssh-add -h, and its destination constraints do not permit this path."}
	}
	if !forwarded(a.bind.Hops) && !a.bind.Failed {
		return true, policy.Decision{}
	}
	return a.srv.policy().Visible(policy.Request{
		Key:        policyKey(id, nil),
		Settings:   id.Settings,
		Hops:       policyHops(a.bind.Hops),
		BindFailed: a.bind.Failed,
		Now:        a.srv.now(),
		Client:     a.peer.Client,
	})
}

// notifyHidden tells the person that a list through a forwarded agent hid
// a key, as a refused signature is told (policy notify setting).
func (s *Server) notifyHidden(a *connAgent, id *identity, why policy.Decision) {
	if s.opts.Notifier == nil || !notify.ShouldNotify(string(s.policy().NotifyMode()), true, true) {
		return
	}
	p := notify.Prompt{KeyComment: id.Comment, KeyFingerprint: id.Fingerprint, Purpose: "list keys (the key was hidden)",
		Path: s.connPath(a.bind.Hops, false), Process: a.peer.Chain}
	title, body := notify.Notice(p, false, why.Reason)
	s.opts.Notifier.Notify(title, body)
}
