package sshwire

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// btKeys are host keys shared by the bind, classify and destrict tests
// (generated once: RSA generation is slow).
var btKeys = sync.OnceValue(func() map[string]ssh.Signer {
	out := map[string]ssh.Signer{}
	add := func(name string, priv any, err error) {
		if err != nil {
			panic(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			panic(err)
		}
		out[name] = s
	}
	for _, name := range []string{"ed25519", "jump", "target", "other", "db", "web", "ca", "ca2", "user"} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		add(name, priv, err)
	}
	for name, c := range map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521()} {
		priv, err := ecdsa.GenerateKey(c, rand.Reader)
		add(name, priv, err)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	add("rsa", priv, err)
	return out
})

func btKey(t testing.TB, name string) ssh.Signer {
	t.Helper()
	s, ok := btKeys()[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return s
}

// btSign signs data, with a given algorithm when alg is not "".
func btSign(t testing.TB, s ssh.Signer, alg string, data []byte) *ssh.Signature {
	t.Helper()
	var sig *ssh.Signature
	var err error
	if alg == "" {
		sig, err = s.Sign(rand.Reader, data)
	} else {
		sig, err = s.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, alg)
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig
}

// btHostCert certifies host key name with CA key ca.
func btHostCert(t testing.TB, name, ca string, edit func(*ssh.Certificate)) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             btKey(t, name).PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           name,
		ValidPrincipals: []string{name + ".internal"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if edit != nil {
		edit(c)
	}
	if err := c.SignCert(rand.Reader, btKey(t, ca)); err != nil {
		t.Fatalf("sign certificate: %v", err)
	}
	return c
}

// btBindWire is the session-bind payload as PROTOCOL.agent lays it out.
type btBindWire struct {
	HostKey   []byte
	SessionID []byte
	Signature []byte
	Forwarded bool
}

func btPayload(key ssh.PublicKey, sid []byte, sig *ssh.Signature, fwd bool) []byte {
	return ssh.Marshal(btBindWire{key.Marshal(), sid, ssh.Marshal(sig), fwd})
}

// btBind is a valid bind of host key name (its certificate when cert is
// not nil) over sid.
func btBind(t testing.TB, name string, cert *ssh.Certificate, sid string, fwd bool) []byte {
	t.Helper()
	s := btKey(t, name)
	var key ssh.PublicKey = s.PublicKey()
	if cert != nil {
		key = cert
	}
	return btPayload(key, []byte(sid), btSign(t, s, "", []byte(sid)), fwd)
}

func btSID(n int) string { return strings.Repeat("s", n) }

func TestParseSessionBind(t *testing.T) {
	s := btKey(t, "ed25519")
	sig := btSign(t, s, "", []byte("session"))
	for _, fwd := range []bool{false, true} {
		sb, err := parseSessionBind(btPayload(s.PublicKey(), []byte("session"), sig, fwd))
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if !bytes.Equal(sb.HostKey.Marshal(), s.PublicKey().Marshal()) || string(sb.SessionID) != "session" ||
			sb.Forwarded != fwd || sb.Signature.Format != sig.Format || !bytes.Equal(sb.Signature.Blob, sig.Blob) {
			t.Errorf("parsed %+v, want key, session id, signature and forwarded=%v back", sb, fwd)
		}
	}
}

func TestParseSessionBindGarbled(t *testing.T) {
	s := btKey(t, "ed25519")
	good := btBind(t, "ed25519", nil, "session", false)
	sig := ssh.Marshal(btSign(t, s, "", []byte("session")))
	cases := map[string][]byte{
		"empty":            {},
		"trailing garbage": append(bytes.Clone(good), 0),
		"bad host key":     ssh.Marshal(btBindWire{[]byte("not a key"), []byte("session"), sig, false}),
		"bad signature":    ssh.Marshal(btBindWire{s.PublicKey().Marshal(), []byte("session"), []byte{0, 0, 0, 9, 'x'}, false}),
		"huge length":      {0xff, 0xff, 0xff, 0xff, 0},
	}
	for i := range len(good) {
		cases[fmt.Sprintf("truncated to %d", i)] = good[:i]
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := parseSessionBind(payload); err == nil {
				t.Fatal("parseSessionBind accepted a garbled payload")
			}
			var b BindState
			if err := b.ApplyPayload(payload); err == nil || !b.Failed || len(b.Hops) != 0 {
				t.Fatalf("ApplyPayload: err=%v failed=%v hops=%d; want an error, Failed, no hop", err, b.Failed, len(b.Hops))
			}
		})
	}
}

func TestBindApply(t *testing.T) {
	// Each step is one bind; want is "" for success or the exact error.
	type step struct {
		payload func(t *testing.T) []byte
		want    string
	}
	ok := func(name, sid string, fwd bool) step {
		return step{func(t *testing.T) []byte { return btBind(t, name, nil, sid, fwd) }, ""}
	}
	label := func(t *testing.T, name string) string { return hostKeyLabel(btKey(t, name).PublicKey()) }
	withAlg := func(name, alg, want string) step {
		return step{func(t *testing.T) []byte {
			s := btKey(t, name)
			return btPayload(s.PublicKey(), []byte("sid"), btSign(t, s, alg, []byte("sid")), false)
		}, want}
	}
	var sixteen []step
	for i := range 16 {
		sixteen = append(sixteen, ok("jump", fmt.Sprintf("sid-%d", i), true))
	}
	cases := []struct {
		name      string
		steps     []step
		wantHops  int
		wantAuth  bool
		wantError string // the last bind's error, when its step does not give it; {name} stands for a key label
	}{
		{name: "ed25519", steps: []step{ok("ed25519", "sid", false)}, wantHops: 1, wantAuth: true},
		{name: "ecdsa p256", steps: []step{ok("p256", "sid", false)}, wantHops: 1, wantAuth: true},
		{name: "ecdsa p384", steps: []step{ok("p384", "sid", true)}, wantHops: 1},
		{name: "ecdsa p521", steps: []step{ok("p521", "sid", false)}, wantHops: 1, wantAuth: true},
		{name: "rsa-sha2-256", steps: []step{withAlg("rsa", ssh.KeyAlgoRSASHA256, "")}, wantHops: 1, wantAuth: true},
		{name: "rsa-sha2-512", steps: []step{withAlg("rsa", ssh.KeyAlgoRSASHA512, "")}, wantHops: 1, wantAuth: true},
		{name: "host certificate", steps: []step{{func(t *testing.T) []byte {
			return btBind(t, "db", btHostCert(t, "db", "ca", nil), "sid", false)
		}, ""}}, wantHops: 1, wantAuth: true},
		{name: "ssh-rsa sha1 refused", steps: []step{withAlg("rsa", ssh.KeyAlgoRSA,
			`session-bind refused for {rsa}: signature algorithm "ssh-rsa" is not accepted for a ssh-rsa host key`)}},
		{name: "bad signature", steps: []step{{func(t *testing.T) []byte {
			s := btKey(t, "jump")
			return btPayload(s.PublicKey(), []byte("sid"), btSign(t, s, "", []byte("another sid")), false)
		}, "session-bind refused for {jump}: host signature over the session id does not verify"}}},
		{name: "signed by another key", steps: []step{{func(t *testing.T) []byte {
			return btPayload(btKey(t, "jump").PublicKey(), []byte("sid"), btSign(t, btKey(t, "target"), "", []byte("sid")), false)
		}, "session-bind refused for {jump}: host signature over the session id does not verify"}}},
		{name: "signature of another type", steps: []step{{func(t *testing.T) []byte {
			return btPayload(btKey(t, "p256").PublicKey(), []byte("sid"), btSign(t, btKey(t, "p384"), "", []byte("sid")), false)
		}, `session-bind refused for {p256}: signature algorithm "ecdsa-sha2-nistp384" is not accepted for a ecdsa-sha2-nistp256 host key`}}},
		{name: "trailing data in signature", steps: []step{{func(t *testing.T) []byte {
			s := btKey(t, "jump")
			sig := btSign(t, s, "", []byte("sid"))
			sig.Rest = []byte{1, 0, 0, 0, 1}
			return btPayload(s.PublicKey(), []byte("sid"), sig, false)
		}, "session-bind refused for {jump}: trailing data after the host signature"}}},
		{name: "certificate with a forged CA signature", steps: []step{{func(t *testing.T) []byte {
			c := btHostCert(t, "db", "ca", nil)
			c.ValidPrincipals = []string{"*"} // edited after signing
			return btBind(t, "db", c, "sid", false)
		}, "session-bind refused for {db cert}: certificate's CA signature does not verify"}}},
		{name: "user certificate as host key", steps: []step{{func(t *testing.T) []byte {
			return btBind(t, "db", btHostCert(t, "db", "ca", func(c *ssh.Certificate) { c.CertType = ssh.UserCert }), "sid", false)
		}, "session-bind refused for {db cert}: certificate is not a host certificate"}}},
		{name: "session id of 128 bytes", steps: []step{ok("jump", btSID(128), false)}, wantHops: 1, wantAuth: true},
		{name: "session id of 129 bytes", steps: []step{ok("jump", btSID(129), false)},
			wantError: "session-bind refused: session id is 129 bytes, more than 128"},
		{name: "empty session id", steps: []step{ok("jump", "", false)}, wantError: "session-bind refused: empty session id"},
		{name: "16 binds", steps: sixteen, wantHops: 16},
		{name: "17th bind", steps: append(append([]step(nil), sixteen...), ok("target", "sid-17", false)),
			wantHops: 16, wantError: "session-bind refused for {target}: more than 16 session-binds on one connection"},
		{name: "forwarding chain then auth", steps: []step{ok("jump", "sid1", true), ok("other", "sid2", true), ok("target", "sid3", false)},
			wantHops: 3, wantAuth: true},
		{name: "bind after auth bind", steps: []step{ok("jump", "sid1", false), ok("target", "sid2", true)}, wantHops: 1, wantAuth: true,
			wantError: "session-bind refused for {target}: the connection already has a bind for authentication, which must be the last"},
		{name: "auth bind repeated", steps: []step{ok("jump", "sid1", false), ok("jump", "sid1", false)}, wantHops: 1, wantAuth: true,
			wantError: "session-bind refused for {jump}: the connection already has a bind for authentication, which must be the last"},
		{name: "duplicate forwarding bind", steps: []step{ok("jump", "sid1", true), ok("jump", "sid1", true)}, wantHops: 1},
		{name: "same key new session", steps: []step{ok("jump", "sid1", true), ok("jump", "sid2", true)}, wantHops: 2},
		{name: "replayed session id with another key", steps: []step{ok("jump", "sid1", true), ok("target", "sid1", false)}, wantHops: 1,
			wantError: "session-bind refused: session id of hop 1 ({jump}) sent again with another host key, {target}"},
		{name: "any bind after a failure", steps: []step{ok("jump", btSID(200), true), ok("jump", "sid", true)},
			wantError: "session-bind refused: an earlier session-bind on this connection failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.wantError
			if want == "" {
				want = tc.steps[len(tc.steps)-1].want
			}
			for _, name := range []string{"jump", "target", "rsa", "p256"} {
				want = strings.ReplaceAll(want, "{"+name+"}", label(t, name))
			}
			want = strings.ReplaceAll(want, "{db cert}", "ssh-ed25519 host certificate "+ssh.FingerprintSHA256(btKey(t, "db").PublicKey()))
			var b BindState
			var err error
			for i, st := range tc.steps {
				err = b.ApplyPayload(st.payload(t))
				if i < len(tc.steps)-1 && err != nil && want == "" {
					t.Fatalf("step %d: %v", i+1, err)
				}
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != want {
				t.Fatalf("last bind: error %q, want %q", got, want)
			}
			if b.Failed != (want != "") {
				t.Errorf("Failed = %v, want %v", b.Failed, want != "")
			}
			if len(b.Hops) != tc.wantHops || b.authBound != tc.wantAuth {
				t.Errorf("hops=%d authBound=%v, want %d and %v", len(b.Hops), b.authBound, tc.wantHops, tc.wantAuth)
			}
			if b.Local() != (len(b.Hops) == 0 && want == "") {
				t.Errorf("Local() = %v with %d hops and failed=%v", b.Local(), len(b.Hops), b.Failed)
			}
		})
	}
}

func TestBindHopContents(t *testing.T) {
	cert := btHostCert(t, "db", "ca", nil)
	var b BindState
	payloads := [][]byte{btBind(t, "jump", nil, "sid1", true), btBind(t, "db", cert, "sid2", false)}
	for _, p := range payloads {
		if err := b.ApplyPayload(p); err != nil {
			t.Fatal(err)
		}
	}
	// The payload buffer is the caller's: hops must not alias it.
	for _, p := range payloads {
		clear(p)
	}
	if h := b.Hops[0]; !hopKeyEqual(h.HostKey, btKey(t, "jump").PublicKey()) || string(h.SessionID) != "sid1" || !h.Forwarded {
		t.Errorf("hop 1 = %s %q forwarded=%v", hostKeyLabel(h.HostKey), h.SessionID, h.Forwarded)
	}
	h := b.Hops[1]
	if _, isCert := h.HostKey.(*ssh.Certificate); !isCert || !hopKeyEqual(h.HostKey, cert) || string(h.SessionID) != "sid2" || h.Forwarded {
		t.Errorf("hop 2 = %s %q forwarded=%v, want the host certificate as sent", hostKeyLabel(h.HostKey), h.SessionID, h.Forwarded)
	}
}

// captureDir holds real OpenSSH 9.2 wire data (see its README).
const captureDir = "testdata/openssh92"

// btRecord is one record of testdata/openssh92/capture.jsonl.
type btRecord struct {
	Conn int    `json:"conn"`
	Op   string `json:"op"`
	Name string `json:"name"`
	Hex  string `json:"hex"`
}

func btCapture(t testing.TB) []btRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(captureDir, "capture.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []btRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r btRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r btRecord) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(r.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// btConn replays one captured connection: its binds, then classifies its
// last sign request.
func btConn(t testing.TB, conn int) (*BindState, []byte) {
	t.Helper()
	b := &BindState{}
	var data []byte
	for _, r := range btCapture(t) {
		if r.Conn != conn {
			continue
		}
		switch r.Op {
		case "extension":
			if err := b.ApplyPayload(r.bytes(t)); err != nil {
				t.Fatalf("conn %d: real OpenSSH bind refused: %v", conn, err)
			}
		case "sign":
			data = r.bytes(t)
		}
	}
	return b, data
}

// btKnownHost reads a key from testdata/openssh92/known_hosts.
func btKnownHost(t testing.TB, host string) ssh.PublicKey {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(captureDir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for len(raw) > 0 {
		marker, hosts, key, _, rest, err := ssh.ParseKnownHosts(raw)
		if err != nil {
			t.Fatal(err)
		}
		raw = rest
		if marker == "cert-authority" && host == "@ca" || marker == "" && len(hosts) == 1 && hosts[0] == host {
			return key
		}
	}
	t.Fatalf("no known_hosts key for %q", host)
	return nil
}

func TestBindRealOpenSSH(t *testing.T) {
	cases := []struct {
		conn      int
		hops      []string // known_hosts names; "db" = the certificate
		forwarded []bool
	}{
		{3, []string{"jump"}, []bool{false}},
		{6, []string{"jump", "target"}, []bool{true, false}},
		{7, []string{"jump", "db"}, []bool{true, false}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint("conn ", tc.conn), func(t *testing.T) {
			b, _ := btConn(t, tc.conn)
			if len(b.Hops) != len(tc.hops) || b.Failed || !b.authBound {
				t.Fatalf("hops=%d failed=%v authBound=%v, want %d hops ending in an auth bind", len(b.Hops), b.Failed, b.authBound, len(tc.hops))
			}
			for i, name := range tc.hops {
				h := b.Hops[i]
				if h.Forwarded != tc.forwarded[i] || len(h.SessionID) != 64 {
					t.Errorf("hop %d: forwarded=%v sid=%d bytes", i+1, h.Forwarded, len(h.SessionID))
				}
				if name == "db" {
					cert, ok := h.HostKey.(*ssh.Certificate)
					if !ok || !hopKeyEqual(cert.SignatureKey, btKnownHost(t, "@ca")) || cert.ValidPrincipals[0] != "db.internal" {
						t.Errorf("hop %d: %s, want the db.internal host certificate", i+1, hostKeyLabel(h.HostKey))
					}
					continue
				}
				if !hopKeyEqual(h.HostKey, btKnownHost(t, name)) {
					t.Errorf("hop %d: %s, want %s's key", i+1, hostKeyLabel(h.HostKey), name)
				}
			}
		})
	}
}

func FuzzParseSessionBind(f *testing.F) {
	f.Add(btBind(f, "ed25519", nil, "session", false))
	f.Add(btBind(f, "p256", nil, "session", true))
	f.Add(btBind(f, "db", btHostCert(f, "db", "ca", nil), "session", false))
	for _, r := range btCapture(f) {
		if r.Op == "extension" {
			f.Add(r.bytes(f))
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		sb, err := parseSessionBind(payload)
		var b BindState
		aerr := b.ApplyPayload(payload)
		if err != nil {
			if aerr == nil || !b.Failed {
				t.Fatalf("parse failed (%v) but ApplyPayload did not fail the connection", err)
			}
			return
		}
		if sb.HostKey == nil || sb.Signature == nil {
			t.Fatal("parsed bind without host key or signature")
		}
		if aerr == nil && (len(b.Hops) != 1 || b.Failed || len(b.Hops[0].SessionID) > maxSessionIDLength) {
			t.Fatalf("accepted bind left hops=%d failed=%v", len(b.Hops), b.Failed)
		}
		if aerr != nil && (!b.Failed || len(b.Hops) != 0) {
			t.Fatalf("refused bind left hops=%d failed=%v", len(b.Hops), b.Failed)
		}
	})
}
