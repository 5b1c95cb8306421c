package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/policy"
)

// Extension and constraint names from OpenSSH's PROTOCOL.agent.
const (
	extSessionBind         = "session-bind@openssh.com"
	extRestrictDestination = "restrict-destination-v00@openssh.com"
)

// signRequest is one sign request on its way through the pipeline.
type signRequest struct {
	blob  []byte
	data  []byte
	flags sshagent.SignatureFlags
	start time.Time

	id         *identity        // lookup
	hops       []sshwire.Hop    // bind: the connection's verified path
	bindFailed bool             // bind: a bind on this connection failed
	what       sshwire.SignData // classify
	decision   policy.Decision  // decide
	prompt     *audit.Prompt    // confirm, when a person was asked
	sig        *ssh.Signature   // sign
}

// claimOnly: a plain "publickey" login (it names no server) through a
// forwarded agent, on a connection whose last bind is for a login: that
// bind is only a claim of where the signature will be used. Whoever holds
// the forwarded socket can bind its own host (it has that host's key) and
// present the signature to any server that accepts the key.
func (r *signRequest) claimOnly() bool {
	n := len(r.hops)
	return r.what.Purpose == policy.PurposeLogin && r.what.Method != sshwire.MethodPublicKeyHostbound &&
		!r.bindFailed && forwarded(r.hops) && n > 0 && !r.hops[n-1].Forwarded
}

// refusal is a decided "no": what the client gets is a plain failure, the
// log and audit record get the rule and the reason.
type refusal struct{ rule, reason string }

func (r *refusal) Error() string { return r.reason }

// sign is the one path every sign request takes:
// bind → classify → decide → confirm → sign → audit → reply.
func (a *connAgent) sign(blob, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	// Until classify says otherwise the data is opaque: a request refused
	// at lookup is audited as such.
	r := &signRequest{blob: blob, data: data, flags: flags, start: a.srv.now(),
		what: sshwire.SignData{Purpose: policy.PurposeOpaque}}
	err := a.stepLookup(r)
	if err == nil {
		a.stepBind(r)
		a.stepClassify(r)
		err = a.stepDecide(r)
	}
	if err == nil {
		err = a.stepConfirmRemembering(r) // stepConfirm, after a refusal on this connection (refusalmemory.go)
	}
	if err == nil {
		err = a.stepRecheck(r)
	}
	if err == nil {
		err = a.stepSign(r)
	}
	if aerr := a.stepAudit(r, err); aerr != nil {
		// No signature leaves the agent without its record.
		r.sig = nil
		err = aerr
	}
	a.srv.notifyOutcome(a, r, err)
	if err != nil {
		a.logRefusal(r, err)
		return nil, err
	}
	if a.srv.opts.Debug {
		a.log.Debug("signed", a.requestAttrs(r)...)
	}
	return r.sig, nil
}

// stepLookup finds the key; a locked agent signs nothing.
func (a *connAgent) stepLookup(r *signRequest) error {
	if a.srv.isLocked() {
		return &refusal{"agent locked", "the agent is locked; unlock it with `ssh-add -X`"}
	}
	now := a.srv.now()
	id, ok := a.srv.keys.get(r.blob, now)
	if !ok {
		id, ok = a.upstreamKey(r.blob) // own keys win
	}
	if !ok {
		return &refusal{"key not loaded", "the requested key is not loaded in the agent"}
	}
	r.id = id
	if va, early := id.notYetValid(now); early {
		return &refusal{"certificate not yet valid", fmt.Sprintf("certificate %q is valid from %s (in %s); it is not used before then",
			id.Cert().KeyId, va.Local().Format(time.DateTime), va.Sub(now).Round(time.Second))}
	}
	return nil
}

// stepBind takes the connection's verified hop chain, as built by the
// session-bind@openssh.com messages received on it so far.
func (a *connAgent) stepBind(r *signRequest) {
	r.hops = append([]sshwire.Hop(nil), a.bind.Hops...)
	r.bindFailed = a.bind.Failed
}

// stepClassify works out what the data to sign is: a login (with user and
// session), an SSHSIG (with namespace), or opaque.
func (a *connAgent) stepClassify(r *signRequest) {
	// A login that names another key, or an algorithm this key cannot
	// sign, is not a login (as OpenSSH's parse_userauth_request).
	r.what = sshwire.Classify(r.data, r.id.Public)
	if r.what.Purpose == policy.PurposeLogin && len(r.hops) == 0 && !r.bindFailed {
		a.srv.unbound.seen(a.peer, a.srv.now())
	}
}

// stepDecide applies, in order, every source of restriction; each can
// only add restriction: the login's binding to this connection, ssh-add -h
// destination constraints, then the policy (with the key's own settings
// and ssh-add -c folded in).
func (a *connAgent) stepDecide(r *signRequest) error {
	if r.what.Purpose == policy.PurposeLogin {
		if err := sshwire.CheckLoginBinding(r.what, &a.bind); err != nil {
			return &refusal{"session-bind", fmt.Sprintf("login refused: %v", err)}
		}
	}
	if r.id.Dest != nil {
		if ok, why := r.id.Dest.PermitSign(r.what, &a.bind); !ok {
			return &refusal{"ssh-add -h", why}
		}
	}
	pol := a.srv.policy()
	r.decision = pol.Decide(a.policyRequest(r))
	switch r.decision.Verdict {
	case policy.Allow:
		return nil
	case policy.Confirm:
		return nil // stepConfirm asks
	default:
		return &refusal{r.decision.Rule, r.decision.Reason}
	}
}

// stepConfirm asks the person when the decision says so.
func (a *connAgent) stepConfirm(r *signRequest) error {
	if r.decision.Verdict != policy.Confirm {
		return nil
	}
	return a.srv.confirm(a, r)
}

// stepRecheck decides again, right before signing, when client rules are
// in force and the requesting process has exited (or runs another
// program) since the decision: a prompt can take a while, and its pid may
// now be another process's. What the policy says of a chain that cannot
// be identified then stands.
func (a *connAgent) stepRecheck(r *signRequest) error {
	pol := a.srv.policy()
	if !pol.HasClientRules() || peerChanged(&a.peer) == "" {
		return nil
	}
	if d := pol.Decide(a.policyRequest(r)); d.Verdict == policy.Deny {
		r.decision = d
		return &refusal{d.Rule, d.Reason}
	}
	return nil
}

// stepSign takes the key out of locked memory for this one signature.
func (a *connAgent) stepSign(r *signRequest) error {
	if r.id.Upstream != "" {
		return a.stepSignUpstream(r) // upstream.go
	}
	sig, err := signWith(r.id, rand.Reader, r.data, signAlgorithm(r.id.Public, r.flags))
	if err != nil {
		return fmt.Errorf("signing failed: %w", err)
	}
	r.sig = sig
	return nil
}

// stepAudit appends the request's record before the reply is sent. When
// the record cannot be written the request is refused.
func (a *connAgent) stepAudit(r *signRequest, outcome error) error {
	if a.srv.opts.Audit == nil {
		return nil
	}
	rec := a.signRecord(r, outcome)
	origin := originKey(r.hops, r.bindFailed)
	var within bool
	if outcome == nil {
		within = a.srv.takeSign(origin, rec.Path)
	} else {
		within = a.srv.take(origin, "refused signature requests", rec.Path)
	}
	if !within {
		// The forwarded path is over its audit budget: counted, and
		// no signature leaves without its own record.
		if outcome != nil {
			return outcome
		}
		return &refusal{"audit rate limit", fmt.Sprintf("more than %d signatures a second through this forwarded path: the agent records each signature, so it refuses until the rate drops", signRate)}
	}
	if err := a.srv.opts.Audit.Append(rec); err != nil {
		a.log.Error("audit log write failed; refusing the signature", "err", err)
		if outcome != nil {
			return outcome
		}
		return &refusal{"audit", fmt.Sprintf("the audit log cannot be written (%v): no signature without a record; fix the log's disk or permissions", err)}
	}
	return nil
}

func (a *connAgent) signRecord(r *signRequest, outcome error) audit.Record {
	sum := sha256.Sum256(r.data)
	rec := audit.Record{
		Event:   audit.EventSign,
		Purpose: &audit.Purpose{Kind: r.what.Purpose.String(), User: r.what.User, Namespace: r.what.Namespace, DataSHA256: hex.EncodeToString(sum[:])},
		Client:  a.auditClient(),
		Path:    a.srv.auditPath(r.hops),
		Prompt:  r.prompt,
	}
	if r.id != nil {
		rec.Key = &audit.Key{Fingerprint: r.id.Fingerprint, Type: r.id.Type(), Comment: r.id.Comment, Cert: auditCert(r.cert()), Upstream: r.id.Upstream}
	} else if pk, err := ssh.ParsePublicKey(r.blob); err == nil {
		rec.Key = &audit.Key{Fingerprint: ssh.FingerprintSHA256(pk), Type: pk.Type()}
	}
	var ref *refusal
	switch {
	case outcome == nil:
		rec.Decision = audit.DecisionAllowed
		rec.Rule, rec.Reason = r.decision.Rule, r.decision.Reason
	case errors.As(outcome, &ref):
		rec.Decision = audit.DecisionDenied
		rec.Rule, rec.Reason = ref.rule, ref.reason
	default:
		rec.Decision = audit.DecisionDenied
		rec.Rule, rec.Reason = "error", outcome.Error()
	}
	return rec
}

func (a *connAgent) logRefusal(r *signRequest, err error) {
	attrs := a.requestAttrs(r)
	var ref *refusal
	if errors.As(err, &ref) {
		attrs = append(attrs, "rule", ref.rule, "reason", ref.reason)
	} else {
		attrs = append(attrs, "err", err)
	}
	a.log.Warn("sign refused", attrs...)
}

func (a *connAgent) requestAttrs(r *signRequest) []any {
	attrs := []any{"purpose", r.what.Purpose.String(), "process", a.peer.Chain, "path", a.srv.requestPathText(r)}
	if r.id != nil {
		attrs = append(attrs, "fingerprint", r.id.Fingerprint, "comment", r.id.Comment)
	}
	if r.what.Purpose == policy.PurposeLogin {
		attrs = append(attrs, "user", r.what.User)
	}
	if r.what.Purpose == policy.PurposeSSHSIG {
		attrs = append(attrs, "namespace", r.what.Namespace)
	}
	return attrs
}
