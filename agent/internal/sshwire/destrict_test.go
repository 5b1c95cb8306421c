package sshwire

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// dtKey, dtHop and the dt* encoders build restrict-destination-v00 details
// as PROTOCOL.agent and OpenSSH's authfd.c encode them.
type dtKey struct {
	key ssh.PublicKey
	ca  bool
}

type dtHop struct {
	user, host string
	keys       []dtKey
	reserved   []byte
}

func dtHopBytes(h dtHop) []byte {
	b := ssh.Marshal(struct {
		User, Host string
		Reserved   []byte
	}{h.user, h.host, h.reserved})
	for _, k := range h.keys {
		b = append(b, ssh.Marshal(struct {
			Blob []byte
			CA   bool
		}{k.key.Marshal(), k.ca})...)
	}
	return b
}

func dtRuleBytes(from, to dtHop) []byte {
	return ssh.Marshal(struct{ From, To, Reserved []byte }{dtHopBytes(from), dtHopBytes(to), nil})
}

func dtDetails(rules ...[]byte) []byte {
	var out []byte
	for _, r := range rules {
		out = append(out, ssh.Marshal(struct{ R []byte }{r})...)
	}
	return out
}

// dtTo is "ssh-add -h [user@]name" for a test key; dtFromTo is "a>[user@]b".
func dtTo(t testing.TB, user, name string) []byte {
	return dtRuleBytes(dtHop{}, dtHost(t, user, name))
}

func dtFromTo(t testing.TB, from, user, to string) []byte {
	return dtRuleBytes(dtHost(t, "", from), dtHost(t, user, to))
}

// dtHost names a test host: "db.internal" and "web.internal" are matched
// through the "ca" CA key, as a @cert-authority known_hosts line gives them.
func dtHost(t testing.TB, user, name string) dtHop {
	if strings.HasSuffix(name, ".internal") {
		return dtHop{user: user, host: name, keys: []dtKey{{btKey(t, "ca").PublicKey(), true}}}
	}
	return dtHop{user: user, host: name, keys: []dtKey{{btKey(t, name).PublicKey(), false}}}
}

func dtParse(t testing.TB, rules ...[]byte) *DestConstraints {
	t.Helper()
	d, err := ParseDestConstraints(dtDetails(rules...))
	if err != nil {
		t.Fatalf("ParseDestConstraints: %v", err)
	}
	return d
}

func TestParseDestConstraintsRealSSHAdd(t *testing.T) {
	var blobs [][]byte
	for _, r := range btCapture(t) {
		if r.Op == "constraint" && r.Name == "restrict-destination-v00@openssh.com" {
			blobs = append(blobs, r.bytes(t))
		}
	}
	if len(blobs) != 2 {
		t.Fatalf("%d captured constraints, want 2", len(blobs))
	}
	jump, target, other, ca := btKnownHost(t, "jump"), btKnownHost(t, "target"), btKnownHost(t, "other"), btKnownHost(t, "@ca")
	kh := func(user, host string, k ssh.PublicKey, isCA bool) dtHop {
		return dtHop{user: user, host: host, keys: []dtKey{{k, isCA}}}
	}
	cases := []struct {
		name   string
		blob   []byte
		want   string
		encode []byte // the same rules through dtDetails: must be byte-identical to ssh-add's
	}{
		{"ssh-add -h 'jump>target' -h jump", blobs[0], "jump>target, jump", dtDetails(
			dtRuleBytes(kh("", "jump", jump, false), kh("", "target", target, false)),
			dtRuleBytes(dtHop{}, kh("", "jump", jump, false)))},
		{"ssh-add -h jump -h 'jump>deploy@target' -h 'jump>db.internal' -h 'jump>other'", blobs[1],
			"jump, jump>deploy@target, jump>db.internal (CA), jump>other", dtDetails(
				dtRuleBytes(dtHop{}, kh("", "jump", jump, false)),
				dtRuleBytes(kh("", "jump", jump, false), kh("deploy", "target", target, false)),
				dtRuleBytes(kh("", "jump", jump, false), kh("", "db.internal", ca, true)),
				dtRuleBytes(kh("", "jump", jump, false), kh("", "other", other, false)))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Equal(tc.blob, tc.encode) {
				t.Errorf("ssh-add's encoding differs from PROTOCOL.agent's as built here")
			}
			d, err := ParseDestConstraints(tc.blob)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
	d, err := ParseDestConstraints(blobs[1])
	if err != nil {
		t.Fatal(err)
	}
	r := d.rules[2]
	if r.From.Hostname != "jump" || len(r.From.Keys) != 1 || !hopKeyEqual(r.From.Keys[0].Key, jump) || r.From.Keys[0].IsCA ||
		r.To.Hostname != "db.internal" || len(r.To.Keys) != 1 || !hopKeyEqual(r.To.Keys[0].Key, ca) || !r.To.Keys[0].IsCA {
		t.Errorf("rule 3 = %+v, want jump's key > db.internal's CA key", r)
	}
	if d.rules[1].To.User != "deploy" || d.rules[0].From.Hostname != "" || len(d.rules[0].From.Keys) != 0 {
		t.Errorf("rules 1-2 = %+v", d.rules[:2])
	}
}

func TestParseDestConstraintsErrors(t *testing.T) {
	jump := dtHost(t, "", "jump")
	good := dtTo(t, "", "jump")
	var many [][]byte
	for range 1025 {
		many = append(many, good)
	}
	cases := []struct {
		name    string
		details []byte
		want    string
	}{
		{"no constraints", nil, "destination constraint lists no destinations"},
		{"user on from", dtDetails(dtRuleBytes(dtHop{user: "root", host: "jump", keys: jump.keys}, jump)),
			`destination constraint 1: inconsistent "from" host: it needs both a name and keys, and no user`},
		{"from name without keys", dtDetails(dtRuleBytes(dtHop{host: "jump"}, jump)),
			`destination constraint 1: inconsistent "from" host: it needs both a name and keys, and no user`},
		{"from keys without name", dtDetails(dtRuleBytes(dtHop{keys: jump.keys}, jump)),
			`destination constraint 1: inconsistent "from" host: it needs both a name and keys, and no user`},
		{"to without name", dtDetails(good, dtRuleBytes(dtHop{}, dtHop{keys: jump.keys})),
			`destination constraint 2: incomplete "to" host: it needs a name and keys`},
		{"to without keys (ssh-add -h user@)", dtDetails(dtRuleBytes(dtHop{}, dtHop{user: "root"})),
			`destination constraint 1: incomplete "to" host: it needs a name and keys`},
		{"hop extension", dtDetails(dtRuleBytes(dtHop{}, dtHop{host: "jump", keys: jump.keys, reserved: []byte("x")})),
			"destination constraint 1: to: unsupported extensions (1 bytes)"},
		{"constraint extension", dtDetails(ssh.Marshal(struct{ From, To, Reserved []byte }{dtHopBytes(dtHop{}), dtHopBytes(jump), []byte("ext")})),
			"destination constraint 1: unsupported extensions (3 bytes)"},
		{"user pattern of 257 bytes", dtDetails(dtTo(t, strings.Repeat("u", 257), "jump")),
			"destination constraint 1: to: user pattern longer than 256 bytes"},
		{"NUL in host name", dtDetails(dtRuleBytes(dtHop{}, dtHop{host: "jump\x00", keys: jump.keys})),
			"destination constraint 1: to: user or host name contains a NUL byte"},
		{"bad key", dtDetails(dtRuleBytes(dtHop{}, dtHop{host: "jump", keys: []dtKey{{dtBadKey{}, false}}})),
			"destination constraint 1: to: host key 1: ssh: unknown key algorithm: nope"},
		{"key without is_ca byte", dtDetails(ssh.Marshal(struct{ From, To, Reserved []byte }{dtHopBytes(dtHop{}),
			append(dtHopBytes(dtHop{host: "jump"}), ssh.Marshal(struct{ B []byte }{btKey(t, "jump").PublicKey().Marshal()})...), nil})),
			"destination constraint 1: to: host key 1: malformed: ssh: short read"},
		{"trailing byte", append(dtDetails(good), 0), "destination constraint 2: malformed: ssh: short read"},
		{"trailing bytes inside a constraint", dtDetails(append(bytes.Clone(good), 1, 2, 3, 4)),
			"destination constraint 1: malformed: ssh: parse error in message type 0"},
		{"truncated", dtDetails(good)[:40], "destination constraint 1: malformed: ssh: short read"},
		{"1025 constraints", dtDetails(many...), "more than 1024 destination constraints"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDestConstraints(tc.details)
			if err == nil {
				t.Fatalf("accepted: %s", d)
			}
			if err.Error() != tc.want {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
	if d, err := ParseDestConstraints(dtDetails(many[:1024]...)); err != nil || len(d.rules) != 1024 {
		t.Errorf("1024 constraints: %v", err)
	}
	if d, err := ParseDestConstraints(dtDetails(dtTo(t, strings.Repeat("u", 256), "jump"))); err != nil || len(d.rules[0].To.User) != 256 {
		t.Errorf("user pattern of 256 bytes: %v", err)
	}
}

// dtBadKey marshals as a key of an unknown type.
type dtBadKey struct{ ssh.PublicKey }

func (dtBadKey) Marshal() []byte { return ssh.Marshal(struct{ T string }{"nope"}) }

func TestParseDestConstraintsDoesNotAlias(t *testing.T) {
	details := dtDetails(dtTo(t, "", "jump"))
	d, err := ParseDestConstraints(details)
	if err != nil {
		t.Fatal(err)
	}
	clear(details)
	if !hopKeyEqual(d.rules[0].To.Keys[0].Key, btKey(t, "jump").PublicKey()) {
		t.Fatal("parsed key changed when the caller's buffer was zeroed")
	}
}

// dtPath builds a connection's hops: "jump>target" is a forwarding bind to
// jump and an authentication bind to target; a trailing ">" makes the
// last bind a forwarding one. "db"/"web" hops send their host certificate.
func dtPath(t testing.TB, path string) *BindState {
	b := &BindState{}
	if path == "" {
		return b
	}
	fwdLast := strings.HasSuffix(path, ">")
	names := strings.Split(strings.TrimSuffix(path, ">"), ">")
	for i, n := range names {
		// "db-expired" and the like are variants of db's certificate.
		base, _, _ := strings.Cut(strings.TrimSuffix(n, "!"), "-")
		var key ssh.PublicKey = btKey(t, base).PublicKey()
		switch n {
		case "db", "web":
			key = dtCert(t, n, nil)
		case "db-expired":
			key = dtCert(t, "db", func(c *ssh.Certificate) { c.ValidBefore = uint64(dtNow.Add(-time.Hour).Unix()) })
		case "db-future":
			key = dtCert(t, "db", func(c *ssh.Certificate) { c.ValidAfter = uint64(dtNow.Add(time.Hour).Unix()) })
		case "db-wildcard":
			key = dtCert(t, "db", func(c *ssh.Certificate) { c.ValidPrincipals = []string{"*.internal"} })
		case "db-noprincipals":
			key = dtCert(t, "db", func(c *ssh.Certificate) { c.ValidPrincipals = nil })
		case "db-critical":
			key = dtCert(t, "db", func(c *ssh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "true"} })
		case "db-otherca":
			key = btHostCert(t, "db", "ca2", nil)
		}
		fwd := i < len(names)-1 || fwdLast
		// "name!" is an authentication bind in the middle of a path, which
		// apply never records but a hand-built BindState can hold.
		if strings.HasSuffix(n, "!") {
			fwd = false
		}
		b.Hops = append(b.Hops, Hop{HostKey: key, SessionID: []byte("sid-" + n), Forwarded: fwd})
	}
	b.authBound = !b.Hops[len(b.Hops)-1].Forwarded
	return b
}

var dtNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// dtCert is a host certificate for name.internal from the "ca" key.
func dtCert(t testing.TB, name string, edit func(*ssh.Certificate)) *ssh.Certificate {
	return btHostCert(t, name, "ca", func(c *ssh.Certificate) {
		c.ValidAfter = uint64(dtNow.Add(-24 * time.Hour).Unix())
		c.ValidBefore = uint64(dtNow.Add(24 * time.Hour).Unix())
		if edit != nil {
			edit(c)
		}
	})
}

func dtLabel(t testing.TB, name string) string {
	switch name {
	case "db", "web":
		return "ssh-ed25519 host certificate " + ssh.FingerprintSHA256(btKey(t, name).PublicKey())
	}
	return hostKeyLabel(btKey(t, name).PublicKey())
}

func TestDestPermitted(t *testing.T) {
	jumpTarget := [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "target")}
	jumpOnly := [][]byte{dtTo(t, "", "jump")}
	users := [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "deploy", "target"), dtFromTo(t, "jump", "d?p*", "other")}
	ca := [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "db.internal")}
	deep := [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "target"), dtFromTo(t, "target", "", "other")}
	L := func(n string) string { return dtLabel(t, n) }
	cases := []struct {
		name   string
		rules  [][]byte
		path   string
		failed bool
		login  bool
		user   string
		ok     bool
		reason string
	}{
		{"local login", jumpTarget, "", false, true, "root", false, "keys restricted with ssh-add -h sign only SSH logins bound with session-bind (ssh 8.9 or later); this connection sent no session-bind, and local use is refused as in OpenSSH"},
		{"local sshsig", jumpTarget, "", false, false, "", false, "keys restricted with ssh-add -h sign only SSH logins bound with session-bind (ssh 8.9 or later); this connection sent no session-bind, and local use is refused as in OpenSSH"},
		{"failed bind", jumpTarget, "jump", true, true, "root", false, "a session-bind on this connection failed, so keys restricted with ssh-add -h are refused on it"},
		{"not a login", jumpTarget, "jump", false, false, "", false, "keys restricted with ssh-add -h sign only SSH logins, and this request is not one"},
		{"here>jump", jumpTarget, "jump", false, true, "root", true, "ssh-add -h allows here>jump"},
		{"here>target", jumpTarget, "target", false, true, "root", false, "no ssh-add -h destination allows the first hop, " + L("target")},
		{"here>jump>target", jumpTarget, "jump>target", false, true, "root", true, "ssh-add -h allows here>jump>target"},
		{"here>jump>target without the rule", jumpOnly, "jump>target", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("target") + ", reached from " + L("jump")},
		{"here>jump>other", jumpTarget, "jump>other", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("other") + ", reached from " + L("jump")},
		{"here>jump>target>other", jumpTarget, "jump>target>other", false, true, "root", false,
			"no ssh-add -h destination allows hop 3, " + L("other") + ", reached from " + L("target")},
		{"here>jump>target>other allowed", deep, "jump>target>other", false, true, "root", true, "ssh-add -h allows here>jump>target>other"},
		{"here>target>other: no first hop", deep, "target>other", false, true, "root", false, "no ssh-add -h destination allows the first hop, " + L("target")},
		{"login on a forwarding bind", jumpTarget, "jump>", false, true, "root", false,
			"the connection's last session-bind (" + L("jump") + ") is for agent forwarding, not for a login"},
		{"auth bind in the middle", jumpTarget, "jump!>target", false, true, "root", false,
			"hop 1 (" + L("jump") + ") was bound for a login but more hops follow it"},
		{"user matches", users, "jump>target", false, true, "deploy", true, "ssh-add -h allows here>jump>target"},
		{"user differs", users, "jump>target", false, true, "root", false, `ssh-add -h does not allow user "root" at target (hop 2)`},
		{"user case differs", users, "jump>target", false, true, "Deploy", false, `ssh-add -h does not allow user "Deploy" at target (hop 2)`},
		{"user pattern d?p*", users, "jump>other", false, true, "deploy", true, "ssh-add -h allows here>jump>other"},
		{"user pattern d?p* misses", users, "jump>other", false, true, "admin", false, `ssh-add -h does not allow user "admin" at other (hop 2)`},
		{"no user pattern: any user", users, "jump", false, true, "anyone", true, "ssh-add -h allows here>jump"},
		{"empty user against a pattern", users, "jump>target", false, true, "", false, `ssh-add -h does not allow user "" at target (hop 2)`},
		{"host certificate from the CA", ca, "jump>db", false, true, "root", true, "ssh-add -h allows here>jump>db.internal"},
		{"wildcard principal", ca, "jump>db-wildcard", false, true, "root", true, "ssh-add -h allows here>jump>db.internal"},
		{"certificate for another name", ca, "jump>web", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("web") + ", reached from " + L("jump")},
		{"expired certificate", ca, "jump>db-expired", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
		{"certificate not yet valid", ca, "jump>db-future", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
		{"certificate without principals", ca, "jump>db-noprincipals", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
		{"certificate with a critical option", ca, "jump>db-critical", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
		{"certificate from another CA", ca, "jump>db-otherca", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
		{"plain key against a CA entry", ca, "jump>db!", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + hostKeyLabel(btKey(t, "db").PublicKey()) + ", reached from " + L("jump")},
		{"certificate against a plain entry for its key", [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "db")}, "jump>db", false, true, "root", false,
			"no ssh-add -h destination allows hop 2, " + L("db") + ", reached from " + L("jump")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := dtParse(t, tc.rules...)
			d.now = func() time.Time { return dtNow }
			b := dtPath(t, tc.path)
			b.Failed = tc.failed
			ok, reason := d.permitted(b, tc.login, tc.user)
			if ok != tc.ok || reason != tc.reason {
				t.Fatalf("permitted = %v, %q\nwant %v, %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

func TestDestVisibleOnList(t *testing.T) {
	jumpTarget := [][]byte{dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "target")}
	jumpOnly := [][]byte{dtTo(t, "", "jump")}
	cases := []struct {
		name   string
		rules  [][]byte
		path   string
		failed bool
		want   bool
	}{
		{"local", jumpOnly, "", false, true},
		{"local after a failed bind", jumpOnly, "", true, false},
		{"failed bind after hops", jumpTarget, "jump>", true, false},
		{"logging in to jump", jumpOnly, "jump", false, true},
		{"logging in to target", jumpOnly, "target", false, false},
		{"forwarded to jump, rule onwards", jumpTarget, "jump>", false, true},
		{"forwarded to jump, no rule onwards", jumpOnly, "jump>", false, false},
		{"forwarded to jump, logging in to target", jumpTarget, "jump>target", false, true},
		{"forwarded to jump and target, no rule from target", jumpTarget, "jump>target>", false, false},
		{"forwarded to target first", jumpTarget, "target>", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := dtParse(t, tc.rules...)
			b := dtPath(t, tc.path)
			b.Failed = tc.failed
			if got := d.VisibleOnList(b); got != tc.want {
				t.Fatalf("VisibleOnList = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDestPermitSign(t *testing.T) {
	d := dtParse(t, dtTo(t, "", "jump"), dtFromTo(t, "jump", "", "target"))
	jump, target := btKey(t, "jump").PublicKey(), btKey(t, "target").PublicKey()
	login := func(sid string, hostKey ssh.PublicKey) SignData {
		return SignData{Purpose: policy.PurposeLogin, User: "root", Method: MethodPublicKeyHostbound, SessionID: []byte(sid), HostKey: hostKey}
	}
	plain := func(sid string) SignData {
		return SignData{Purpose: policy.PurposeLogin, User: "root", Method: MethodPublicKey, SessionID: []byte(sid)}
	}
	cases := []struct {
		name   string
		path   string
		sd     SignData
		ok     bool
		reason string
	}{
		{"host-bound login to jump", "jump", login("sid-jump", jump), true, "ssh-add -h allows here>jump"},
		{"plain publickey login to jump (first hop)", "jump", plain("sid-jump"), true, "ssh-add -h allows here>jump"},
		{"host-bound login through jump", "jump>target", login("sid-target", target), true, "ssh-add -h allows here>jump>target"},
		{"plain publickey login through jump", "jump>target", plain("sid-target"), false,
			"a login through a forwarded agent must name the destination's host key (publickey-hostbound-v00@openssh.com); this one does not"},
		{"login for another session", "jump>target", login("sid-other", target), false,
			"the login's session id is not that of the connection's last session-bind (" + hostKeyLabel(target) + ", 2 binds)"},
		{"login naming another host key", "jump>target", login("sid-target", jump), false,
			"the login names host key " + hostKeyLabel(jump) + " but the connection's last session-bind is for " + hostKeyLabel(target)},
		{"sshsig through jump", "jump>", SignData{Purpose: policy.PurposeSSHSIG, Namespace: "git"}, false,
			"keys restricted with ssh-add -h sign only SSH logins, and this request is not one"},
		{"local sshsig", "", SignData{Purpose: policy.PurposeSSHSIG, Namespace: "git"}, false,
			"keys restricted with ssh-add -h sign only SSH logins bound with session-bind (ssh 8.9 or later); this connection sent no session-bind, and local use is refused as in OpenSSH"},
		{"opaque", "jump", SignData{Purpose: policy.PurposeOpaque}, false,
			"keys restricted with ssh-add -h sign only SSH logins, and this request is not one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := d.PermitSign(tc.sd, dtPath(t, tc.path))
			if ok != tc.ok || reason != tc.reason {
				t.Fatalf("PermitSign = %v, %q\nwant %v, %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

// TestDestRealOpenSSH runs real ssh-add -h constraints against real binds
// and logins from OpenSSH 9.2 (testdata/openssh92/README).
func TestDestRealOpenSSH(t *testing.T) {
	var blobs [][]byte
	for _, r := range btCapture(t) {
		if r.Op == "constraint" {
			blobs = append(blobs, r.bytes(t))
		}
	}
	user := btKnownHostFile(t, "user.pub")
	inValidity := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		blob   int // 0: -h 'jump>target' -h jump; 1: -h jump -h 'jump>deploy@target' -h 'jump>db.internal' -h 'jump>other'
		conn   int
		now    time.Time
		ok     bool
		reason string
	}{
		{"here>jump, rules 1", 0, 3, inValidity, true, "ssh-add -h allows here>jump"},
		{"here>jump, rules 2", 1, 3, inValidity, true, "ssh-add -h allows here>jump"},
		{"here>jump>target as root, rules 1", 0, 6, inValidity, true, "ssh-add -h allows here>jump>target"},
		{"here>jump>target as root, rules 2 (deploy only)", 1, 6, inValidity, false, `ssh-add -h does not allow user "root" at target (hop 2)`},
		{"here>jump>db.internal by CA, rules 2", 1, 7, inValidity, true, "ssh-add -h allows here>jump>db.internal"},
		{"here>jump>db.internal after the certificate expired", 1, 7, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), false, "no ssh-add -h destination allows hop 2"},
		{"here>jump>db.internal, rules 1", 0, 7, inValidity, false, "no ssh-add -h destination allows hop 2"},
		{"ssh-keygen -Y sign, rules 1", 0, 8, inValidity, false, "keys restricted with ssh-add -h sign only SSH logins bound with session-bind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDestConstraints(blobs[tc.blob])
			if err != nil {
				t.Fatal(err)
			}
			d.now = func() time.Time { return tc.now }
			b, data := btConn(t, tc.conn)
			ok, reason := d.PermitSign(Classify(data, user), b)
			if ok != tc.ok || !strings.HasPrefix(reason, tc.reason) {
				t.Fatalf("PermitSign = %v, %q\nwant %v, %q…", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		s, pattern string
		want       bool
	}{
		{"", "", true},
		{"a", "", false},
		{"", "*", true},
		{"", "?", false},
		{"deploy", "deploy", true},
		{"deploy", "Deploy", false},
		{"deploy", "dep*", true},
		{"deploy", "*loy", true},
		{"deploy", "d?ploy", true},
		{"dploy", "d?ploy", false},
		{"deploy", "*", true},
		{"deploy", "**", true},
		{"deploy", "de*l*y", true},
		{"deploy", "de*x*y", false},
		{"a*c", "a*c", true},
		{"a,b", "a,b", true},
		{"a", "a,b", false},
		{"x", "!x", false},
		{"!x", "!x", true},
		{"aaa", "*a*a*a*", true},
		{"aa", "*a*a*a*", false},
		{"mississippi", "*sip*", true},
		{"mississippi", "m*iss*ppi", true},
		{"mississippi", "m*iss*ppx", false},
		{strings.Repeat("a", 4000) + "b", strings.Repeat("*a", 100) + "*c", false},
	}
	for _, tc := range cases {
		if got := matchPattern(tc.s, tc.pattern); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.s, tc.pattern, got, tc.want)
		}
	}
}

func TestDestString(t *testing.T) {
	d := dtParse(t, dtTo(t, "", "jump"), dtFromTo(t, "jump", "deploy", "target"), dtFromTo(t, "jump", "", "db.internal"))
	if got, want := d.String(), "jump, jump>deploy@target, jump>db.internal (CA)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var nilD *DestConstraints
	if nilD.String() != "" {
		t.Error("nil String() not empty")
	}
}

func FuzzParseDestConstraints(f *testing.F) {
	f.Add(dtDetails(dtTo(f, "", "jump"), dtFromTo(f, "jump", "deploy", "target"), dtFromTo(f, "jump", "", "db.internal")))
	f.Add(dtDetails(dtTo(f, "", "jump")))
	for _, r := range btCapture(f) {
		if r.Op == "constraint" {
			f.Add(r.bytes(f))
		}
	}
	paths := []*BindState{dtPath(f, ""), dtPath(f, "jump"), dtPath(f, "jump>"), dtPath(f, "jump>target"), dtPath(f, "jump>db")}
	f.Fuzz(func(t *testing.T, details []byte) {
		d, err := ParseDestConstraints(details)
		if err != nil {
			if d != nil {
				t.Fatal("error with constraints")
			}
			return
		}
		if len(d.rules) == 0 {
			t.Fatal("no rules and no error")
		}
		for i, r := range d.rules {
			if r.To.Hostname == "" || len(r.To.Keys) == 0 || r.From.User != "" || (r.From.Hostname == "") != (len(r.From.Keys) == 0) {
				t.Fatalf("rule %d accepted: %+v", i, r)
			}
		}
		_ = d.String()
		for _, b := range paths {
			ok, reason := d.permitted(b, true, "root")
			if reason == "" {
				t.Fatal("empty reason")
			}
			if ok && len(b.Hops) == 0 {
				t.Fatal("permitted on a local connection")
			}
			d.VisibleOnList(b)
			d.PermitSign(SignData{Purpose: policy.PurposeLogin, User: "root", SessionID: []byte("x")}, b)
		}
	})
}

func ExampleDestConstraints_String() {
	jump := dtHopBytes(dtHop{host: "jump", keys: []dtKey{{btKeys()["jump"].PublicKey(), false}}})
	target := dtHopBytes(dtHop{user: "deploy", host: "target", keys: []dtKey{{btKeys()["target"].PublicKey(), false}}})
	details := dtDetails(
		ssh.Marshal(struct{ From, To, Reserved []byte }{dtHopBytes(dtHop{}), jump, nil}),
		ssh.Marshal(struct{ From, To, Reserved []byte }{jump, target, nil}))
	d, err := ParseDestConstraints(details)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d)
	// Output: jump, jump>deploy@target
}
