package sshwire

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// ctLogin is a signed publickey userauth request as RFC 4252 section 7 lays
// it out; Rest carries the host key of the host-bound method.
type ctLogin struct {
	SessionID  []byte
	Type       byte
	User       string
	Service    string
	Method     string
	SigFollows byte
	Alg        string
	KeyBlob    []byte
	Rest       []byte `ssh:"rest"`
}

func ctGoodLogin(t testing.TB, hostbound bool) ctLogin {
	t.Helper()
	l := ctLogin{
		SessionID: []byte("session-id"), Type: 50, User: "deploy", Service: "ssh-connection",
		Method: "publickey", SigFollows: 1, Alg: "ssh-ed25519", KeyBlob: btKey(t, "user").PublicKey().Marshal(),
	}
	if hostbound {
		l.Method = "publickey-hostbound-v00@openssh.com"
		l.Rest = ssh.Marshal(struct{ K []byte }{btKey(t, "target").PublicKey().Marshal()})
	}
	return l
}

// ctSSHSIG is what ssh-keygen -Y sign sends to the agent (PROTOCOL.sshsig).
func ctSSHSIG(namespace string) []byte {
	return append([]byte("SSHSIG"), ssh.Marshal(struct {
		Namespace string
		Reserved  []byte
		HashAlg   string
		Hash      []byte
	}{namespace, nil, "sha512", bytes.Repeat([]byte{7}, 64)})...)
}

func TestClassifySignData(t *testing.T) {
	edit := func(hostbound bool, f func(*ctLogin)) []byte {
		l := ctGoodLogin(t, hostbound)
		f(&l)
		return ssh.Marshal(l)
	}
	opaque := SignData{Purpose: policy.PurposeOpaque}
	user := btKey(t, "user").PublicKey()
	target := btKey(t, "target").PublicKey()
	cases := []struct {
		name string
		data []byte
		want SignData
	}{
		{"publickey login", edit(false, func(*ctLogin) {}), SignData{Purpose: policy.PurposeLogin, User: "deploy", Service: "ssh-connection",
			Method: "publickey", Alg: "ssh-ed25519", SessionID: []byte("session-id"), KeyBlob: user.Marshal()}},
		{"host-bound login", edit(true, func(*ctLogin) {}), SignData{Purpose: policy.PurposeLogin, User: "deploy", Service: "ssh-connection",
			Method: "publickey-hostbound-v00@openssh.com", Alg: "ssh-ed25519", SessionID: []byte("session-id"), KeyBlob: user.Marshal(), HostKey: target}},
		{"empty user is still a login", edit(false, func(l *ctLogin) { l.User = "" }), SignData{Purpose: policy.PurposeLogin, Service: "ssh-connection",
			Method: "publickey", Alg: "ssh-ed25519", SessionID: []byte("session-id"), KeyBlob: user.Marshal()}},
		{"sshsig", ctSSHSIG("git"), SignData{Purpose: policy.PurposeSSHSIG, Namespace: "git", HashAlg: "sha512"}},
		{"sshsig file namespace", ctSSHSIG("file"), SignData{Purpose: policy.PurposeSSHSIG, Namespace: "file", HashAlg: "sha512"}},
		{"empty", nil, opaque},
		{"garbage", []byte("this is not a login"), opaque},
		{"random-looking", bytes.Repeat([]byte{0xa5}, 300), opaque},
		{"empty session id", edit(false, func(l *ctLogin) { l.SessionID = nil }), opaque},
		{"message 51", edit(false, func(l *ctLogin) { l.Type = 51 }), opaque},
		{"no signature follows", edit(false, func(l *ctLogin) { l.SigFollows = 0 }), opaque},
		{"signature-follows byte 2", edit(false, func(l *ctLogin) { l.SigFollows = 2 }), opaque},
		{"service ssh-userauth", edit(false, func(l *ctLogin) { l.Service = "ssh-userauth" }), opaque},
		{"method hostbased", edit(false, func(l *ctLogin) { l.Method = "hostbased" }), opaque},
		{"method password", edit(false, func(l *ctLogin) { l.Method = "password" }), opaque},
		{"NUL in user", edit(false, func(l *ctLogin) { l.User = "root\x00" }), opaque},
		{"NUL in method", edit(false, func(l *ctLogin) { l.Method = "publickey\x00" }), opaque},
		{"bad user key", edit(false, func(l *ctLogin) { l.KeyBlob = []byte("junk") }), opaque},
		{"publickey with a host key after it", edit(false, func(l *ctLogin) { l.Rest = ctGoodLogin(t, true).Rest }), opaque},
		{"host-bound without host key", edit(true, func(l *ctLogin) { l.Rest = nil }), opaque},
		{"host-bound with bad host key", edit(true, func(l *ctLogin) { l.Rest = ssh.Marshal(struct{ K []byte }{[]byte("junk")}) }), opaque},
		{"host-bound with trailing byte", edit(true, func(l *ctLogin) { l.Rest = append(l.Rest, 0) }), opaque},
		{"trailing byte", append(edit(false, func(*ctLogin) {}), 0), opaque},
		{"truncated login", edit(true, func(*ctLogin) {})[:60], opaque},
		{"sshsig trailing byte", append(ctSSHSIG("git"), 0), opaque},
		{"sshsig truncated", ctSSHSIG("git")[:20], opaque},
		{"sshsig magic only", []byte("SSHSIG"), opaque},
		{"sshsig lowercase magic", append([]byte("sshsig"), ctSSHSIG("git")[6:]...), opaque},
		{"sshsig NUL in namespace", ctSSHSIG("git\x00"), opaque},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.data)
			if !ctEqual(got, tc.want) {
				t.Fatalf("classify = %s\nwant %s", ctString(got), ctString(tc.want))
			}
		})
	}
}

func TestClassifyDoesNotAlias(t *testing.T) {
	data := ssh.Marshal(ctGoodLogin(t, true))
	sd := classify(data)
	clear(data) // the daemon zeroes the data it was asked to sign
	if string(sd.SessionID) != "session-id" || !bytes.Equal(sd.KeyBlob, btKey(t, "user").PublicKey().Marshal()) ||
		!hopKeyEqual(sd.HostKey, btKey(t, "target").PublicKey()) {
		t.Fatalf("classification changed when the data was zeroed: %s", ctString(sd))
	}
}

func TestClassifyForKey(t *testing.T) {
	withKey := func(signer, alg string) []byte {
		l := ctGoodLogin(t, false)
		l.KeyBlob = btKey(t, signer).PublicKey().Marshal()
		l.Alg = alg
		return ssh.Marshal(l)
	}
	cases := []struct {
		name string
		data []byte
		key  string
		want policy.Purpose
	}{
		{"ed25519 names itself", withKey("user", "ssh-ed25519"), "user", policy.PurposeLogin},
		{"names another key", withKey("user", "ssh-ed25519"), "jump", policy.PurposeOpaque},
		{"wrong algorithm for ed25519", withKey("user", "ssh-rsa"), "user", policy.PurposeOpaque},
		{"rsa-sha2-512", withKey("rsa", "rsa-sha2-512"), "rsa", policy.PurposeLogin},
		{"rsa-sha2-256", withKey("rsa", "rsa-sha2-256"), "rsa", policy.PurposeLogin},
		{"ssh-rsa", withKey("rsa", "ssh-rsa"), "rsa", policy.PurposeLogin},
		{"ecdsa p256", withKey("p256", "ecdsa-sha2-nistp256"), "p256", policy.PurposeLogin},
		{"ecdsa p256 naming p384", withKey("p256", "ecdsa-sha2-nistp384"), "p256", policy.PurposeOpaque},
		{"sshsig stays sshsig", ctSSHSIG("git"), "user", policy.PurposeSSHSIG},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.data, btKey(t, tc.key).PublicKey()); got.Purpose != tc.want {
				t.Fatalf("kind = %s, want %s", ctString(got), ctString(SignData{Purpose: tc.want}))
			}
		})
	}
	userCert := &ssh.Certificate{Key: btKey(t, "rsa").PublicKey(), CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := userCert.SignCert(randReader{}, btKey(t, "ca")); err != nil {
		t.Fatal(err)
	}
	l := ctGoodLogin(t, false)
	l.KeyBlob, l.Alg = userCert.Marshal(), ssh.CertAlgoRSASHA512v01
	if got := Classify(ssh.Marshal(l), userCert); got.Purpose != policy.PurposeLogin {
		t.Errorf("RSA certificate login with %s: kind %d, want login", l.Alg, got.Purpose)
	}

	// The certificate as a file: the agent signs with the plain key, the
	// login names the certificate of exactly that key.
	cert := func(key string, typ uint32) *ssh.Certificate {
		c := &ssh.Certificate{Key: btKey(t, key).PublicKey(), CertType: typ, KeyId: key, ValidBefore: ssh.CertTimeInfinity}
		if err := c.SignCert(randReader{}, btKey(t, "ca")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	naming := func(c *ssh.Certificate, alg string) []byte {
		l := ctGoodLogin(t, true)
		l.KeyBlob, l.Alg = c.Marshal(), alg
		return ssh.Marshal(l)
	}
	for _, tc := range []struct {
		name string
		data []byte
		key  ssh.PublicKey
		want policy.Purpose
	}{
		{"plain key, login names its certificate", naming(cert("user", ssh.UserCert), ssh.CertAlgoED25519v01), btKey(t, "user").PublicKey(), policy.PurposeLogin},
		{"plain rsa key, login names its certificate with rsa-sha2-256", naming(cert("rsa", ssh.UserCert), ssh.CertAlgoRSASHA256v01), btKey(t, "rsa").PublicKey(), policy.PurposeLogin},
		{"plain key, certificate of another key", naming(cert("jump", ssh.UserCert), ssh.CertAlgoED25519v01), btKey(t, "user").PublicKey(), policy.PurposeOpaque},
		{"plain key, a host certificate of it", naming(cert("user", ssh.HostCert), ssh.CertAlgoED25519v01), btKey(t, "user").PublicKey(), policy.PurposeOpaque},
		{"plain key, certificate with the plain algorithm", naming(cert("user", ssh.UserCert), ssh.KeyAlgoED25519), btKey(t, "user").PublicKey(), policy.PurposeOpaque},
		{"certificate in the agent, login names another certificate of the key", naming(cert("user", ssh.UserCert), ssh.CertAlgoED25519v01), func() *ssh.Certificate {
			c := cert("user", ssh.UserCert)
			c.KeyId = "another"
			c.SignCert(randReader{}, btKey(t, "ca"))
			return c
		}(), policy.PurposeOpaque},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.data, tc.key)
			if got.Purpose != tc.want {
				t.Fatalf("kind = %s, want %s", ctString(got), ctString(SignData{Purpose: tc.want}))
			}
			if got.Purpose == policy.PurposeLogin && got.Cert == nil {
				t.Errorf("the login's certificate is not kept")
			}
		})
	}
}

// randReader is a deterministic reader: certificate nonces need no entropy
// in a test.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func TestCheckLoginBinding(t *testing.T) {
	jump, target := btKey(t, "jump").PublicKey(), btKey(t, "target").PublicKey()
	chain := &BindState{Hops: []Hop{
		{HostKey: jump, SessionID: []byte("sid-jump"), Forwarded: true},
		{HostKey: target, SessionID: []byte("sid-target")},
	}, authBound: true}
	fwdOnly := &BindState{Hops: []Hop{{HostKey: jump, SessionID: []byte("sid-jump"), Forwarded: true}}}
	login := func(sid string, hostKey ssh.PublicKey) SignData {
		return SignData{Purpose: policy.PurposeLogin, User: "deploy", SessionID: []byte(sid), HostKey: hostKey}
	}
	cases := []struct {
		name string
		sd   SignData
		b    *BindState
		want string
	}{
		{"no binds: nothing to check", login("anything", nil), &BindState{}, ""},
		{"not a login", SignData{Purpose: policy.PurposeSSHSIG, Namespace: "git"}, chain, ""},
		{"last bind's session", login("sid-target", nil), chain, ""},
		{"host-bound to the last bind's key", login("sid-target", target), chain, ""},
		{"another session", login("sid-other", nil), chain,
			"the login's session id is not that of the connection's last session-bind (" + hostKeyLabel(target) + ", 2 binds)"},
		{"an earlier hop's session", login("sid-jump", jump), chain,
			"the login's session id is not that of the connection's last session-bind (" + hostKeyLabel(target) + ", 2 binds)"},
		{"host-bound to another key", login("sid-target", jump), chain,
			"the login names host key " + hostKeyLabel(jump) + " but the connection's last session-bind is for " + hostKeyLabel(target)},
		{"session of a forwarding bind", login("sid-jump", jump), fwdOnly,
			"the login's session is bound for agent forwarding, not for authentication"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLoginBinding(tc.sd, tc.b)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("CheckLoginBinding = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClassifyRealOpenSSH(t *testing.T) {
	user := btKnownHostFile(t, "user.pub")
	cases := []struct {
		conn     int
		hostName string // known_hosts name of the host-bound key; "db" = certificate
	}{
		{3, "jump"},
		{4, "jump"},
		{6, "target"},
		{7, "db"},
	}
	for _, tc := range cases {
		b, data := btConn(t, tc.conn)
		sd := Classify(data, user)
		if sd.Purpose != policy.PurposeLogin || sd.User != "root" || sd.Method != MethodPublicKeyHostbound || sd.Alg != "ssh-ed25519" {
			t.Errorf("conn %d: %s, want a host-bound login as root", tc.conn, ctString(sd))
			continue
		}
		if err := CheckLoginBinding(sd, b); err != nil {
			t.Errorf("conn %d: real login refused: %v", tc.conn, err)
		}
		if tc.hostName == "db" {
			if _, ok := sd.HostKey.(*ssh.Certificate); !ok {
				t.Errorf("conn %d: host key %s, want the host certificate", tc.conn, hostKeyLabel(sd.HostKey))
			}
		} else if !hopKeyEqual(sd.HostKey, btKnownHost(t, tc.hostName)) {
			t.Errorf("conn %d: host key %s, want %s's", tc.conn, hostKeyLabel(sd.HostKey), tc.hostName)
		}
	}
	// A login replayed on another connection is refused: conn 3's login on
	// conn 6's binds.
	_, data3 := btConn(t, 3)
	b6, _ := btConn(t, 6)
	if err := CheckLoginBinding(classify(data3), b6); err == nil {
		t.Error("conn 3's login accepted on conn 6")
	}
	_, sig := btConn(t, 8)
	if sd := classify(sig); sd.Purpose != policy.PurposeSSHSIG || sd.Namespace != "git" || sd.HashAlg != "sha512" {
		t.Errorf("ssh-keygen -Y sign -n git: %s", ctString(sd))
	}
}

func btKnownHostFile(t testing.TB, name string) ssh.PublicKey {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(captureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctEqual(a, b SignData) bool {
	return a.Purpose == b.Purpose && a.User == b.User && a.Service == b.Service && a.Method == b.Method && a.Alg == b.Alg &&
		bytes.Equal(a.SessionID, b.SessionID) && bytes.Equal(a.KeyBlob, b.KeyBlob) &&
		(a.HostKey == nil) == (b.HostKey == nil) && (a.HostKey == nil || hopKeyEqual(a.HostKey, b.HostKey)) &&
		a.Namespace == b.Namespace && a.HashAlg == b.HashAlg
}

func ctString(sd SignData) string {
	var sb strings.Builder
	sb.WriteString(sd.Purpose.String())
	if sd.Purpose == policy.PurposeLogin {
		sb.WriteString(" user=" + sd.User + " method=" + sd.Method + " alg=" + sd.Alg + " host=" + hostKeyLabel(sd.HostKey))
	}
	if sd.Purpose == policy.PurposeSSHSIG {
		sb.WriteString(" namespace=" + sd.Namespace)
	}
	return sb.String()
}

func FuzzClassifySignData(f *testing.F) {
	f.Add(ssh.Marshal(ctGoodLogin(f, false)))
	f.Add(ssh.Marshal(ctGoodLogin(f, true)))
	f.Add(ctSSHSIG("git"))
	f.Add([]byte("SSHSIG"))
	for _, r := range btCapture(f) {
		if r.Op == "sign" {
			f.Add(r.bytes(f))
		}
	}
	user := btKey(f, "user").PublicKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		sd := classify(data)
		switch sd.Purpose {
		case policy.PurposeLogin:
			if len(sd.SessionID) == 0 || sd.Service != "ssh-connection" ||
				(sd.Method == MethodPublicKeyHostbound) != (sd.HostKey != nil) ||
				(sd.Method != MethodPublicKey && sd.Method != MethodPublicKeyHostbound) {
				t.Fatalf("inconsistent login: %s", ctString(sd))
			}
			if _, err := ssh.ParsePublicKey(sd.KeyBlob); err != nil {
				t.Fatalf("login with an unparseable key: %v", err)
			}
		case policy.PurposeSSHSIG:
			if !bytes.HasPrefix(data, []byte("SSHSIG")) {
				t.Fatal("SSHSIG without the magic")
			}
		case policy.PurposeOpaque:
			if !ctEqual(sd, SignData{Purpose: policy.PurposeOpaque}) {
				t.Fatalf("opaque with fields: %s", ctString(sd))
			}
		default:
			t.Fatalf("kind %d", sd.Purpose)
		}
		if fk := Classify(data, user); fk.Purpose == policy.PurposeLogin && !bytes.Equal(fk.KeyBlob, user.Marshal()) {
			t.Fatal("ForKey kept a login naming another key")
		}
		_ = CheckLoginBinding(sd, &BindState{Hops: []Hop{{HostKey: user, SessionID: []byte("x")}}})
		if !bytes.Equal(orig, data) {
			t.Fatal("classification modified its input")
		}
	})
}
