package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// CertOf is what the policy uses of a user certificate, after checking
// that it is a user certificate and that its CA signed it. Whoever holds a
// forwarded agent chooses the certificate a login names, so a certificate
// whose signature does not verify must not select [[key]] rules.
func CertOf(c *ssh.Certificate) (*Cert, error) {
	if c == nil {
		return nil, errors.New("no certificate")
	}
	if c.CertType != ssh.UserCert {
		return nil, fmt.Errorf("certificate %q is not a user certificate", c.KeyId)
	}
	if c.SignatureKey == nil || c.Signature == nil {
		return nil, fmt.Errorf("certificate %q is not signed", c.KeyId)
	}
	// The signed part is the certificate without its signature field.
	unsigned := *c
	unsigned.Signature = nil
	b := unsigned.Marshal()
	if err := c.SignatureKey.Verify(b[:len(b)-4], c.Signature); err != nil {
		return nil, fmt.Errorf("certificate %q: the CA signature does not verify: %w", c.KeyId, err)
	}
	out := &Cert{
		CA:         ssh.FingerprintSHA256(c.SignatureKey),
		Principals: append([]string(nil), c.ValidPrincipals...),
		KeyID:      c.KeyId,
	}
	if c.ValidAfter != 0 {
		out.ValidAfter = certTimeOf(c.ValidAfter)
	}
	if c.ValidBefore != ssh.CertTimeInfinity {
		out.ValidBefore = certTimeOf(c.ValidBefore)
	}
	return out, nil
}

func certTimeOf(t uint64) time.Time {
	if t > 1<<62 {
		return time.Unix(1<<62, 0)
	}
	return time.Unix(int64(t), 0)
}

// Text describes the certificate for people: `certificate "id" (principals
// alice, bob; CA SHA256:…)`.
func (c *Cert) Text() string {
	pr := "no principals"
	if len(c.Principals) > 0 {
		pr = "principals " + strings.Join(c.Principals, ", ")
	}
	return fmt.Sprintf("certificate %q (%s; CA %s)", c.KeyID, pr, c.CA)
}
