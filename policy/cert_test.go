package policy

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestCertOf(t *testing.T) {
	w := newWorld(t)
	good := hostCert(t, w.userKey, w.ca, ssh.UserCert, 10, 2000, "alice", "deploy")
	c, err := CertOf(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.CA != w.ca.fp() || strings.Join(c.Principals, ",") != "alice,deploy" || c.ValidAfter.Unix() != 10 || c.ValidBefore.Unix() != 2000 {
		t.Errorf("CertOf = %+v", c)
	}
	forever, _ := CertOf(hostCert(t, w.userKey, w.ca, ssh.UserCert, 0, ssh.CertTimeInfinity, "alice"))
	if !forever.ValidBefore.IsZero() || !forever.ValidAfter.IsZero() {
		t.Errorf("an unlimited certificate has times: %+v", forever)
	}
	forged := hostCert(t, w.userKey, w.stranger, ssh.UserCert, 0, ssh.CertTimeInfinity, "alice")
	forged.SignatureKey = w.ca.pub
	if _, err := CertOf(forged); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a certificate claiming another CA: err %v", err)
	}
	if _, err := CertOf(hostCert(t, w.userKey, w.ca, ssh.HostCert, 0, ssh.CertTimeInfinity, "alice")); err == nil {
		t.Error("a host certificate passes as a user certificate")
	}
}

func TestDecideByCertificate(t *testing.T) {
	w := newWorld(t)
	src := fmt.Sprintf(`
known_hosts = ["/kh"]
[defaults]
confirm = "never"
allow = ["nowhere.invalid"]

[[key]]
match = "principal:deploy-*"
allow = ["db.internal"]

[[key]]
match = "ca:%s"
allow = ["jump.example"]

[[key]]
match = "work-*"
allow = ["other.example"]
`, w.ca.fp())
	p := mustParse(t, src, files{"/kh": w.knownHosts})
	cert := func(ca testKey, principals ...string) *Cert {
		c, err := CertOf(hostCert(t, w.userKey, ca, ssh.UserCert, 0, ssh.CertTimeInfinity, principals...))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dst := func(k ssh.PublicKey) []Hop { return []Hop{{HostKey: k}} }
	for _, tc := range []struct {
		name    string
		key     Key
		hops    []Hop
		verdict Verdict
		rule    string
	}{
		{"CA match allows what its section allows", Key{Comment: "tsh", Cert: cert(w.ca, "alice")}, dst(w.jump.pub), Allow, fmt.Sprintf("key %q allow[0]", "ca:"+w.ca.fp())},
		{"CA match refuses what its section does not", Key{Comment: "tsh", Cert: cert(w.ca, "alice")}, dst(w.db.pub), Deny, fmt.Sprintf("key %q allow", "ca:"+w.ca.fp())},
		{"another CA: not matched, defaults refuse", Key{Comment: "tsh", Cert: cert(w.stranger, "alice")}, dst(w.jump.pub), Deny, "defaults allow"},
		{"principal match comes first in the file", Key{Comment: "tsh", Cert: cert(w.ca, "deploy-eu")}, dst(w.db.pub), Allow, `key "principal:deploy-*" allow[0]`},
		{"principal glob does not match", Key{Comment: "tsh", Cert: cert(w.stranger, "deployer")}, dst(w.db.pub), Deny, "defaults allow"},
		{"no principals: no principal match", Key{Comment: "tsh", Cert: cert(w.stranger)}, dst(w.db.pub), Deny, "defaults allow"},
		{"certificate section before the comment section", Key{Comment: "work-1", Cert: cert(w.ca, "alice")}, dst(w.other.pub), Deny, fmt.Sprintf("key %q allow", "ca:"+w.ca.fp())},
		{"the same key without its certificate: by comment", Key{Comment: "work-1"}, dst(w.other.pub), Allow, `key "work-*" allow[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(Request{Key: tc.key, Hops: tc.hops, User: "u"})
			if d.Verdict != tc.verdict || d.Rule != tc.rule {
				t.Errorf("got %v by %q, want %v by %q\n%s", d.Verdict, d.Rule, tc.verdict, tc.rule, d.Reason)
			}
			if tc.key.Cert != nil && !strings.Contains(d.Reason, "with certificate \"") {
				t.Errorf("the reason does not name the certificate: %s", d.Reason)
			}
		})
	}
	if got := p.MatchingSections(Key{Comment: "work-1", Cert: cert(w.ca, "deploy-x")}); len(got) != 3 {
		t.Errorf("MatchingSections = %q, want all three", got)
	}
	var ambiguous []string
	for _, warn := range p.Warnings() {
		if strings.Contains(warn, "ambiguous") {
			ambiguous = append(ambiguous, warn)
		}
	}
	if len(ambiguous) != 2 || !strings.Contains(ambiguous[0], `/etc/policy.toml:11:1: ambiguous: a certificate can match both [[key]] match "principal:deploy-*" (line 7)`) {
		t.Errorf("ambiguity warnings:\n%s", strings.Join(ambiguous, "\n"))
	}
}

func TestParseCertMatchErrors(t *testing.T) {
	for src, want := range map[string]string{
		"[[key]]\nmatch = \"ca:nope\"\n":    `after ca: write the CA key's fingerprint`,
		"[[key]]\nmatch = \"principal:\"\n": `names no principal`,
	} {
		_, err := Parse("/etc/policy.toml", []byte(src), files{}.read)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", src, err, want)
		}
	}
}

// TestVisiblePlainKeyForCertificateFile: a plain key may be used with a
// certificate kept as a file, which a list does not show: it is listed
// where a certificate section would allow the path, and hidden elsewhere.
func TestVisiblePlainKeyForCertificateFile(t *testing.T) {
	w := newWorld(t)
	src := fmt.Sprintf(`
known_hosts = ["/kh"]
[defaults]
allow = ["nowhere.invalid"]
[[key]]
match = "ca:%s"
allow = ["jump.example", "jump.example>db.internal"]
`, w.ca.fp())
	p := mustParse(t, src, files{"/kh": w.knownHosts})
	fwd := Hop{HostKey: w.jump.pub, Forwarded: true}
	if ok, why := p.Visible(Request{Key: Key{Comment: "plain"}, Hops: []Hop{fwd}}); !ok {
		t.Errorf("plain key hidden on jump although a certificate section allows it: %s", why.Reason)
	}
	if ok, _ := p.Visible(Request{Key: Key{Comment: "plain"}, Hops: []Hop{fwd, {HostKey: w.db.pub}}}); !ok {
		t.Error("plain key hidden for jump>db")
	}
	ok, why := p.Visible(Request{Key: Key{Comment: "plain"}, Hops: []Hop{fwd, {HostKey: w.other.pub}}})
	if ok || why.Rule != "defaults allow" {
		t.Errorf("plain key for jump>other: shown %v (%s)", ok, why.Rule)
	}
	// Signing is still decided by the key's own rules without a certificate.
	if d := p.Decide(Request{Key: Key{Comment: "plain"}, Hops: []Hop{fwd, {HostKey: w.db.pub}}}); d.Verdict != Deny {
		t.Errorf("plain key without its certificate signs for jump>db: %v %s", d.Verdict, d.Rule)
	}
}
