package sshwire

// session-bind@openssh.com: how a connection learns, with the host's own
// signature, which hosts it passed through. Semantics follow OpenSSH's
// ssh-agent.c process_ext_session_bind; where this file is stricter, the
// comment says so.

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/ssh"
)

// Limits from OpenSSH's ssh-agent.c (AGENT_MAX_SESSION_IDS, AGENT_MAX_SID_LEN).
const (
	maxSessionBinds    = 16
	maxSessionIDLength = 128
)

// sessionBind is one parsed, not yet verified, session-bind@openssh.com
// request.
type sessionBind struct {
	HostKey   ssh.PublicKey // may be *ssh.Certificate for a host certificate
	SessionID []byte
	Signature *ssh.Signature // the host's signature over SessionID
	Forwarded bool           // is_forwarding: the bind is for an agent forwarded to HostKey's host
}

// Hop is one verified session-bind.
type Hop struct {
	HostKey   ssh.PublicKey // as sent; may be *ssh.Certificate for host certificates
	SessionID []byte
	Forwarded bool
}

// BindState is per-connection binding state. It is not safe for concurrent
// use: one connection is served by one goroutine.
type BindState struct {
	Hops []Hop
	// Failed is set by the first bind that fails and never cleared. OpenSSH
	// only distrusts a connection whose binds all failed; safe-agent
	// distrusts it after any failure.
	Failed bool
	// authBound is set once a bind with is_forwarding=0 (a bind for user
	// authentication) is accepted: it is the last bind the connection
	// accepts.
	authBound bool
}

// sessionBindWire is the extension's payload after its name, per
// OpenSSH's PROTOCOL.agent and authfd.c ssh_agent_bind_hostkey.
type sessionBindWire struct {
	HostKey   []byte
	SessionID []byte
	Signature []byte
	Forwarded bool
}

// parseSessionBind parses the contents of a session-bind@openssh.com
// extension request (everything after the extension name): string hostkey,
// string session_id, string signature, bool is_forwarding. Trailing bytes
// are an error. It does not verify anything; apply does.
func parseSessionBind(contents []byte) (sessionBind, error) {
	// x/crypto's parsers alias their input (an ed25519 key is a sub-slice),
	// and the caller may reuse or zero its buffer.
	contents = bytes.Clone(contents)
	var w sessionBindWire
	if err := ssh.Unmarshal(contents, &w); err != nil {
		return sessionBind{}, fmt.Errorf("malformed session-bind request: %w", err)
	}
	key, err := ssh.ParsePublicKey(w.HostKey)
	if err != nil {
		return sessionBind{}, fmt.Errorf("session-bind host key: %w", err)
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(w.Signature, sig); err != nil {
		return sessionBind{}, fmt.Errorf("session-bind signature: %w", err)
	}
	return sessionBind{
		HostKey:   key,
		SessionID: w.SessionID,
		Signature: sig,
		Forwarded: w.Forwarded,
	}, nil
}

// ApplyPayload parses and applies one session-bind request; a parse error
// marks the connection failed too, as OpenSSH marks it on any attempt.
func (b *BindState) ApplyPayload(contents []byte) error {
	sb, err := parseSessionBind(contents)
	if err != nil {
		b.Failed = true
		return err
	}
	return b.apply(sb)
}

// apply verifies one session-bind and records it as a hop. On any error it
// sets b.Failed and returns an error saying why; the error names host keys
// by type and fingerprint only.
//
// Rules, in OpenSSH's order: the session id is 1..128 bytes; the host's
// signature over it verifies; no bind is accepted after a bind for
// authentication; the same session id with the same host key is a
// duplicate, accepted without adding a hop; the same session id with
// another host key fails; at most 16 hops.
//
// Stricter than OpenSSH: an empty session id, a host key other than
// ed25519, ecdsa P-256/384/521 or RSA (or a certificate of one), an RSA
// signature with SHA-1 (ssh-rsa), any bind after a failed one, and a
// duplicate of an earlier hop after the authentication bind all fail.
func (b *BindState) apply(sb sessionBind) error {
	err := b.accept(sb)
	if err != nil {
		b.Failed = true
	}
	return err
}

func (b *BindState) accept(sb sessionBind) error {
	if b.Failed {
		return errors.New("session-bind refused: an earlier session-bind on this connection failed")
	}
	if sb.HostKey == nil || sb.Signature == nil {
		return errors.New("session-bind refused: no host key or signature")
	}
	if len(sb.SessionID) == 0 {
		return errors.New("session-bind refused: empty session id")
	}
	if len(sb.SessionID) > maxSessionIDLength {
		return fmt.Errorf("session-bind refused: session id is %d bytes, more than %d", len(sb.SessionID), maxSessionIDLength)
	}
	if err := verifyHostSignature(sb.HostKey, sb.SessionID, sb.Signature); err != nil {
		return fmt.Errorf("session-bind refused for %s: %w", hostKeyLabel(sb.HostKey), err)
	}
	// OpenSSH checks the authentication bind inside its loop over hops, so a
	// duplicate of an earlier forwarding hop would pass; here nothing does.
	if b.authBound {
		return fmt.Errorf("session-bind refused for %s: the connection already has a bind for authentication, which must be the last", hostKeyLabel(sb.HostKey))
	}
	for i, h := range b.Hops {
		if subtle.ConstantTimeCompare(h.SessionID, sb.SessionID) != 1 {
			// A new session id with a known key is normal: two
			// connections to the same host.
			continue
		}
		if hopKeyEqual(h.HostKey, sb.HostKey) {
			return nil // duplicate: already recorded
		}
		return fmt.Errorf("session-bind refused: session id of hop %d (%s) sent again with another host key, %s",
			i+1, hostKeyLabel(h.HostKey), hostKeyLabel(sb.HostKey))
	}
	if len(b.Hops) >= maxSessionBinds {
		return fmt.Errorf("session-bind refused for %s: more than %d session-binds on one connection", hostKeyLabel(sb.HostKey), maxSessionBinds)
	}
	b.Hops = append(b.Hops, Hop{
		HostKey:   sb.HostKey,
		SessionID: bytes.Clone(sb.SessionID),
		Forwarded: sb.Forwarded,
	})
	if !sb.Forwarded {
		b.authBound = true
	}
	return nil
}

// Local reports whether the connection counts as local: no hop and no
// failed bind.
func (b *BindState) Local() bool {
	return len(b.Hops) == 0 && !b.Failed
}

// hostSigFormats lists, per plain host key type, the signature formats a
// session-bind may carry. ssh-rsa (RSA with SHA-1) is left out on purpose.
var hostSigFormats = map[string][]string{
	ssh.KeyAlgoED25519:  {ssh.KeyAlgoED25519},
	ssh.KeyAlgoECDSA256: {ssh.KeyAlgoECDSA256},
	ssh.KeyAlgoECDSA384: {ssh.KeyAlgoECDSA384},
	ssh.KeyAlgoECDSA521: {ssh.KeyAlgoECDSA521},
	ssh.KeyAlgoRSA:      {ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512},
}

// verifyHostSignature checks the host's signature over the session id. A
// host certificate is verified with its certified key, after its own CA
// signature is checked (OpenSSH checks it when parsing any certificate).
func verifyHostSignature(key ssh.PublicKey, sid []byte, sig *ssh.Signature) error {
	plain := key
	if cert, ok := key.(*ssh.Certificate); ok {
		if cert.CertType != ssh.HostCert {
			return errors.New("certificate is not a host certificate")
		}
		if err := verifyCertSignature(cert); err != nil {
			return err
		}
		plain = cert.Key
	}
	formats, ok := hostSigFormats[plain.Type()]
	if !ok {
		return fmt.Errorf("host key type %s is not accepted", plain.Type())
	}
	if !slices.Contains(formats, sig.Format) {
		return fmt.Errorf("signature algorithm %q is not accepted for a %s host key", sig.Format, plain.Type())
	}
	// Non-FIDO signatures carry nothing after the blob; OpenSSH refuses
	// trailing data too.
	if len(sig.Rest) != 0 {
		return errors.New("trailing data after the host signature")
	}
	if err := plain.Verify(sid, sig); err != nil {
		return errors.New("host signature over the session id does not verify")
	}
	return nil
}

// verifyCertSignature checks a certificate's CA signature over the
// certificate's own bytes. x/crypto only checks it inside CertChecker, which
// also checks principals and validity; OpenSSH checks the signature on
// every parse and the rest only where a certificate is used.
func verifyCertSignature(cert *ssh.Certificate) error {
	if cert.Signature == nil || cert.SignatureKey == nil {
		return errors.New("certificate is not signed")
	}
	unsigned := *cert
	unsigned.Signature = nil
	signed := unsigned.Marshal()
	// The unsigned form ends with an empty signature string (4 zero bytes).
	signed = signed[:len(signed)-4]
	if err := cert.SignatureKey.Verify(signed, cert.Signature); err != nil {
		return errors.New("certificate's CA signature does not verify")
	}
	return nil
}

// hopKeyEqual compares two public keys (or certificates) by their wire
// encoding, as OpenSSH's sshkey_equal does for the key types we accept.
func hopKeyEqual(a, b ssh.PublicKey) bool {
	if a == nil || b == nil {
		return false
	}
	return bytes.Equal(a.Marshal(), b.Marshal())
}

// hostKeyLabel names a host key for logs and refusals: type and SHA256
// fingerprint, never the key itself. A certificate is named by its
// certified key's fingerprint, as OpenSSH does.
func hostKeyLabel(k ssh.PublicKey) string {
	if k == nil {
		return "(no key)"
	}
	if cert, ok := k.(*ssh.Certificate); ok {
		return fmt.Sprintf("%s host certificate %s", cert.Key.Type(), ssh.FingerprintSHA256(cert.Key))
	}
	return fmt.Sprintf("%s %s", k.Type(), ssh.FingerprintSHA256(k))
}
