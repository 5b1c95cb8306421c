package sshwire

// ssh-add -h: the restrict-destination-v00@openssh.com key constraint.
// Decoding follows OpenSSH's ssh-agent.c parse_dest_constraint and
// PROTOCOL.agent; enforcement follows identity_permitted,
// permitted_by_dest_constraints, match_key_hop and the destination checks
// of process_sign_request2.
//
// How the daemon uses it, for a key added with ssh-add -h (d != nil):
//
//   - sign request: ok, why := d.PermitSign(Classify(data, key), &bind);
//     refuse unless ok. As in OpenSSH such a key signs nothing but a login
//     bound to the connection: no SSHSIG, no opaque data, nothing on a
//     connection with no session-bind — so also nothing local, not even
//     ssh-keygen -Y sign on the user's own machine (OpenSSH's
//     process_sign_request2 refuses "on unbound connection" before
//     anything else) — and nothing on a connection with a failed bind.
//   - list request: show the key only if d.VisibleOnList(&bind). A local
//     connection (no hop, no failed bind) sees it, as in OpenSSH.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// Limits from OpenSSH's ssh-agent.c.
const (
	maxDestConstraints    = 1024 // AGENT_MAX_DEST_CONSTRAINTS
	maxDestUserPatternLen = 256  // AGENT_USER_CONSTRAINT_MAX_LEN
)

// caSigAlgs is OpenSSH's SSH_ALLOWED_CA_SIGALGS: the CA signature
// algorithms a host certificate may use to match a CA entry.
var caSigAlgs = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256,
	"webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// destKey is one host key (or host CA key) of a destHop.
type destKey struct {
	Key  ssh.PublicKey
	IsCA bool // a @cert-authority key: matches host certificates it signed for Hostname
}

// destHop is one side of a destRule. An empty Hostname (and no keys) on
// the From side means the user's own machine.
type destHop struct {
	User     string // to side only: a match_pattern glob for the login user; "" = any
	Hostname string // the name given to ssh-add -h; used to check certificate principals
	Keys     []destKey
}

// destRule is one ssh-add -h argument: "to" or "from>to".
type destRule struct {
	From destHop
	To   destHop
}

// DestConstraints are the destination constraints a key was added with.
type DestConstraints struct {
	rules []destRule
	now   func() time.Time // certificate validity; nil = time.Now
}

// destConstraintWire is one constraint inside the extension details.
type destConstraintWire struct {
	From     []byte
	To       []byte
	Reserved []byte
}

type destHopWire struct {
	User     string
	Hostname string
	Reserved []byte
	Keys     []byte `ssh:"rest"`
}

type destKeyWire struct {
	Blob []byte
	IsCA bool
	Rest []byte `ssh:"rest"`
}

type stringThenRest struct {
	S    []byte
	Rest []byte `ssh:"rest"`
}

// ParseDestConstraints decodes the details of a
// restrict-destination-v00@openssh.com constraint extension, as
// x/crypto/ssh/agent delivers them in ConstraintExtension.ExtensionDetails:
// a sequence of string-wrapped constraints. Anything OpenSSH refuses is an
// error (the add must fail), and so is an empty list (OpenSSH would add
// the key unrestricted; ssh-add never sends one).
func ParseDestConstraints(details []byte) (*DestConstraints, error) {
	// Parsed keys alias their input; the caller's buffer is not ours to keep.
	details = bytes.Clone(details)
	d := &DestConstraints{}
	for len(details) > 0 {
		if len(d.rules) >= maxDestConstraints {
			return nil, fmt.Errorf("more than %d destination constraints", maxDestConstraints)
		}
		var w stringThenRest
		if err := ssh.Unmarshal(details, &w); err != nil {
			return nil, fmt.Errorf("destination constraint %d: malformed: %w", len(d.rules)+1, err)
		}
		details = w.Rest
		r, err := parseDestRule(w.S)
		if err != nil {
			return nil, fmt.Errorf("destination constraint %d: %w", len(d.rules)+1, err)
		}
		d.rules = append(d.rules, r)
	}
	if len(d.rules) == 0 {
		return nil, errors.New("destination constraint lists no destinations")
	}
	return d, nil
}

func parseDestRule(b []byte) (destRule, error) {
	var w destConstraintWire
	if err := ssh.Unmarshal(b, &w); err != nil {
		return destRule{}, fmt.Errorf("malformed: %w", err)
	}
	from, err := parseDestHop(w.From)
	if err != nil {
		return destRule{}, fmt.Errorf("from: %w", err)
	}
	to, err := parseDestHop(w.To)
	if err != nil {
		return destRule{}, fmt.Errorf("to: %w", err)
	}
	if len(w.Reserved) != 0 {
		return destRule{}, fmt.Errorf("unsupported extensions (%d bytes)", len(w.Reserved))
	}
	if (from.Hostname == "") != (len(from.Keys) == 0) || from.User != "" {
		return destRule{}, errors.New(`inconsistent "from" host: it needs both a name and keys, and no user`)
	}
	if to.Hostname == "" || len(to.Keys) == 0 {
		return destRule{}, errors.New(`incomplete "to" host: it needs a name and keys`)
	}
	return destRule{From: from, To: to}, nil
}

func parseDestHop(b []byte) (destHop, error) {
	var w destHopWire
	if err := ssh.Unmarshal(b, &w); err != nil {
		return destHop{}, fmt.Errorf("malformed: %w", err)
	}
	if hasNUL(w.User, w.Hostname) {
		return destHop{}, errors.New("user or host name contains a NUL byte")
	}
	if len(w.Reserved) != 0 {
		return destHop{}, fmt.Errorf("unsupported extensions (%d bytes)", len(w.Reserved))
	}
	if len(w.User) > maxDestUserPatternLen {
		return destHop{}, fmt.Errorf("user pattern longer than %d bytes", maxDestUserPatternLen)
	}
	h := destHop{User: w.User, Hostname: w.Hostname}
	for rest := w.Keys; len(rest) > 0; {
		var k destKeyWire
		if err := ssh.Unmarshal(rest, &k); err != nil {
			return destHop{}, fmt.Errorf("host key %d: malformed: %w", len(h.Keys)+1, err)
		}
		rest = k.Rest
		key, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			return destHop{}, fmt.Errorf("host key %d: %w", len(h.Keys)+1, err)
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			// OpenSSH verifies every certificate it parses.
			if err := verifyCertSignature(cert); err != nil {
				return destHop{}, fmt.Errorf("host key %d: %w", len(h.Keys)+1, err)
			}
		}
		h.Keys = append(h.Keys, destKey{Key: key, IsCA: k.IsCA})
	}
	return h, nil
}

// permitted checks a sign request's destination for a restricted key, as
// OpenSSH's process_sign_request2 does before it looks at the session id:
// the connection must have hops and no failed bind, the request must be a
// login, and every hop must be allowed by a rule from the hop before it
// (from the user's machine for the first), with the login user checked
// against the last hop's rule. reason says why not, or which path was
// allowed. PermitSign adds the checks that need the whole login.
func (d *DestConstraints) permitted(b *BindState, login bool, user string) (ok bool, reason string) {
	switch {
	case b == nil || b.Failed:
		return false, "a session-bind on this connection failed, so keys restricted with ssh-add -h are refused on it"
	case len(b.Hops) == 0:
		return false, "keys restricted with ssh-add -h sign only SSH logins bound with session-bind (ssh 8.9 or later); " +
			"this connection sent no session-bind, and local use is refused as in OpenSSH"
	case !login:
		return false, "keys restricted with ssh-add -h sign only SSH logins, and this request is not one"
	}
	return d.identityPermitted(b, &user)
}

// PermitSign is the whole check of a sign request for a key added with
// ssh-add -h: permitted, then the login must be bound to the connection's
// last session-bind (CheckLoginBinding), and a login through a forwarded
// agent must name the destination's host key.
func (d *DestConstraints) PermitSign(sd SignData, b *BindState) (ok bool, reason string) {
	if ok, reason = d.permitted(b, sd.Purpose == policy.PurposeLogin, sd.User); !ok {
		return false, reason
	}
	if err := CheckLoginBinding(sd, b); err != nil {
		return false, err.Error()
	}
	if len(b.Hops) > 1 && sd.HostKey == nil {
		return false, "a login through a forwarded agent must name the destination's host key " +
			"(publickey-hostbound-v00@openssh.com); this one does not"
	}
	return true, reason
}

// VisibleOnList says whether a list request on this connection shows the
// key (OpenSSH's process_request_identities): yes locally; no after a
// failed bind; otherwise every hop must be allowed and, when the last hop
// is a forwarding one, some rule must start from it.
func (d *DestConstraints) VisibleOnList(b *BindState) bool {
	if b == nil || b.Failed {
		return false
	}
	if len(b.Hops) == 0 {
		return true
	}
	ok, _ := d.identityPermitted(b, nil)
	return ok
}

// identityPermitted is OpenSSH's identity_permitted for a connection with
// at least one hop; user is nil for a list request.
func (d *DestConstraints) identityPermitted(b *BindState, user *string) (bool, string) {
	var from ssh.PublicKey
	path := []string{"here"}
	for i, h := range b.Hops {
		var testUser *string
		if last := i == len(b.Hops)-1; last {
			testUser = user // the user is checked at the final hop only
			if h.Forwarded && user != nil {
				return false, fmt.Sprintf("the connection's last session-bind (%s) is for agent forwarding, not for a login", hostKeyLabel(h.HostKey))
			}
		} else if !h.Forwarded {
			return false, fmt.Sprintf("hop %d (%s) was bound for a login but more hops follow it", i+1, hostKeyLabel(h.HostKey))
		}
		r, ok := d.permittedBy(from, h.HostKey, testUser)
		if !ok {
			return false, d.whyNot(i, from, h.HostKey, testUser)
		}
		path = append(path, r.To.Hostname)
		from = h.HostKey
	}
	// A key allowed to reach a forwarding host but not to go anywhere from
	// it is hidden from that host's list requests.
	if last := b.Hops[len(b.Hops)-1]; last.Forwarded && user == nil {
		if _, ok := d.permittedBy(last.HostKey, nil, nil); !ok {
			return false, fmt.Sprintf("ssh-add -h allows the key up to %s but nowhere beyond it", path[len(path)-1])
		}
	}
	return true, "ssh-add -h allows " + strings.Join(path, ">")
}

// whyNot explains a failed hop: a user mismatch when the hop itself was
// allowed, otherwise the hop.
func (d *DestConstraints) whyNot(i int, from, to ssh.PublicKey, user *string) string {
	if user != nil {
		if r, ok := d.permittedBy(from, to, nil); ok {
			return fmt.Sprintf("ssh-add -h does not allow user %q at %s (hop %d)", *user, r.To.Hostname, i+1)
		}
	}
	if i == 0 {
		return fmt.Sprintf("no ssh-add -h destination allows the first hop, %s", hostKeyLabel(to))
	}
	return fmt.Sprintf("no ssh-add -h destination allows hop %d, %s, reached from %s", i+1, hostKeyLabel(to), hostKeyLabel(from))
}

// permittedBy is OpenSSH's permitted_by_dest_constraints: the first rule
// whose from side matches fromKey (nil: the user's machine), whose to side
// matches toKey (nil: any) and whose user pattern matches user (nil: not
// checked).
func (d *DestConstraints) permittedBy(fromKey, toKey ssh.PublicKey, user *string) (destRule, bool) {
	for _, r := range d.rules {
		if fromKey == nil {
			if r.From.Hostname != "" || len(r.From.Keys) != 0 {
				continue
			}
		} else if !d.matchKeyHop(fromKey, r.From) {
			continue
		}
		if toKey != nil && !d.matchKeyHop(toKey, r.To) {
			continue
		}
		if r.To.User != "" && user != nil && !matchPattern(*user, r.To.User) {
			continue
		}
		return r, true
	}
	return destRule{}, false
}

// matchKeyHop is OpenSSH's match_key_hop: a plain host key matches a
// non-CA entry equal to it; a host certificate matches a CA entry for its
// signing key when it is valid for the hop's host name.
func (d *DestConstraints) matchKeyHop(key ssh.PublicKey, h destHop) bool {
	cert, isCert := key.(*ssh.Certificate)
	for _, k := range h.Keys {
		if !isCert {
			if !k.IsCA && hopKeyEqual(key, k.Key) {
				return true
			}
			continue
		}
		if k.IsCA && hopKeyEqual(cert.SignatureKey, k.Key) && d.hostCertValid(cert, h.Hostname) {
			return true
		}
	}
	return false
}

// hostCertValid is OpenSSH's sshkey_cert_check_host: a host certificate,
// within its validity period, with a principal pattern matching host, no
// critical options, signed with an allowed algorithm.
func (d *DestConstraints) hostCertValid(cert *ssh.Certificate, host string) bool {
	now := time.Now
	if d.now != nil {
		now = d.now
	}
	t := now().Unix()
	if cert.CertType != ssh.HostCert || t < 0 ||
		uint64(t) < cert.ValidAfter || uint64(t) >= cert.ValidBefore ||
		len(cert.CriticalOptions) != 0 || cert.Signature == nil {
		return false
	}
	if !slices.Contains(caSigAlgs, cert.Signature.Format) {
		return false
	}
	if verifyCertSignature(cert) != nil {
		return false
	}
	for _, p := range cert.ValidPrincipals {
		if matchPattern(host, p) {
			return true
		}
	}
	return false
}

// String summarises the rules for logs and key listings, in ssh-add -h
// syntax: "jump, jump>deploy@target, jump>db.internal (CA)".
func (d *DestConstraints) String() string {
	if d == nil {
		return ""
	}
	parts := make([]string, 0, len(d.rules))
	for _, r := range d.rules {
		s := destHopString(r.To)
		if r.From.Hostname != "" {
			s = destHopString(r.From) + ">" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func destHopString(h destHop) string {
	s := h.Hostname
	if h.User != "" {
		s = h.User + "@" + s
	}
	for _, k := range h.Keys {
		if k.IsCA {
			return s + " (CA)"
		}
	}
	return s
}

// matchPattern is OpenSSH's match_pattern: '*' matches any run of bytes,
// '?' any one byte, everything else itself, case-sensitively. There are no
// lists or negations: ',' and '!' are literal.
func matchPattern(s, pattern string) bool {
	// Greedy match with backtracking to the last '*': linear in practice
	// and never exponential.
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
