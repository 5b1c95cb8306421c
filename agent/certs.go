package agent

import (
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// certExpired records and announces a certificate that reached its
// ValidBefore and left the agent, so that the person renews it before the
// next login fails with a bare "Permission denied".
func (s *Server) certExpired(id *identity) {
	c := id.Cert()
	why := fmt.Sprintf("certificate %q expired at %s (ValidBefore)", c.KeyId, id.Expires.Local().Format(time.DateTime))
	s.log.Info("certificate expired; removed from the agent", "fingerprint", id.Fingerprint, "comment", id.Comment, "key_id", c.KeyId)
	s.auditEvent(audit.Record{Event: audit.EventRemove, Decision: audit.DecisionAllowed, Key: auditKey(id), Reason: why})
	if s.opts.Notifier == nil || s.policy().NotifyMode() == policy.NotifyNever {
		return
	}
	title, body := notify.CertExpired(id.Comment, id.Fingerprint, c.KeyId, c.ValidPrincipals)
	s.opts.Notifier.Notify(title, body)
}

// cert is the user certificate a sign request uses, when its CA signature
// verifies: the identity's own, or the certificate the login names for
// the plain key (ssh's CertificateFile).
func (r *signRequest) cert() *ssh.Certificate {
	if c := r.id.Cert(); c != nil {
		if r.id.policyCert() == nil {
			return nil
		}
		return c
	}
	c := r.what.Cert
	if c == nil {
		return nil
	}
	if _, err := policy.CertOf(c); err != nil {
		return nil
	}
	return c
}

// certText describes a certificate for prompts and notices ("" for none).
func certText(c *ssh.Certificate) string {
	if c == nil {
		return ""
	}
	ci := CertInfoOf(c)
	return notify.CertificateText(ci.KeyID, ci.Principals, ci.CAFingerprint, ci.ValidBefore)
}

// auditCert identifies a certificate in an audit record (nil for none).
func auditCert(c *ssh.Certificate) *audit.Cert {
	if c == nil {
		return nil
	}
	ci := CertInfoOf(c)
	return &audit.Cert{KeyID: ci.KeyID, Principals: ci.Principals, CAFingerprint: ci.CAFingerprint, ValidAfter: ci.ValidAfter, ValidBefore: ci.ValidBefore}
}
