package agent

import (
	"fmt"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// certExpired records and announces a certificate that reached its
// ValidBefore and left the agent, so that the person renews it before the
// next login fails with a bare "Permission denied".
func (s *Server) certExpired(id *Identity) {
	c := id.Cert()
	why := fmt.Sprintf("certificate %q expired at %s (ValidBefore)", c.KeyId, id.Expires.Local().Format(time.DateTime))
	s.log.Info("certificate expired; removed from the agent", "fingerprint", id.Fingerprint, "comment", id.Comment, "key_id", c.KeyId)
	s.auditEvent(audit.Record{Event: "remove", Decision: "allowed", Key: auditKey(id), Reason: why})
	if s.opts.Notifier == nil || s.policy().NotifyMode() == policy.NotifyNever {
		return
	}
	title, body := notify.CertExpired(id.Comment, id.Fingerprint, c.KeyId, c.ValidPrincipals)
	s.opts.Notifier.Notify(title, body)
}
